"""The journal's SQLite schema, as numbered migrations (``PRAGMA user_version`` says which ran)."""

from __future__ import annotations

SCHEMA_VERSION = 5

MIGRATIONS: dict[int, str] = {
    1: """
    CREATE TABLE jobs (
        id TEXT PRIMARY KEY,
        provider TEXT NOT NULL,
        model TEXT NOT NULL,
        dialect TEXT NOT NULL,
        base_url TEXT NOT NULL,
        request TEXT NOT NULL,
        calls TEXT NOT NULL,
        n INTEGER NOT NULL,
        status TEXT NOT NULL,
        out_dir TEXT NOT NULL,
        output TEXT NOT NULL,
        error TEXT,
        pid INTEGER,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE INDEX jobs_status ON jobs(status);
    CREATE INDEX jobs_created ON jobs(created_at);
    CREATE TABLE job_tasks (
        job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
        remote_id TEXT NOT NULL,
        call_index INTEGER NOT NULL,
        first_image INTEGER NOT NULL,
        count INTEGER NOT NULL,
        seed INTEGER,
        status TEXT NOT NULL,
        error TEXT,
        expires_at REAL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        PRIMARY KEY (job_id, remote_id)
    );
    CREATE INDEX job_tasks_remote ON job_tasks(remote_id);
    CREATE TABLE job_images (
        job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
        image_index INTEGER NOT NULL,
        state TEXT NOT NULL,
        path TEXT,
        url TEXT,
        seed INTEGER,
        width INTEGER,
        height INTEGER,
        remote_id TEXT,
        claimed_by INTEGER,
        updated_at REAL NOT NULL,
        PRIMARY KEY (job_id, image_index)
    );
    """,
    # v2: batch lines carry a key (their normalised request and output) so --resume can find them again.
    2: """
    ALTER TABLE jobs ADD COLUMN batch_key TEXT;
    CREATE INDEX jobs_batch_key ON jobs(batch_key);
    """,
    # v3: a process is known by its pid *and* its start time, so a reused pid never holds a claim; a claim
    # records the file name it is about to create, so a file placed just before a crash is adopted, not redone.
    3: """
    ALTER TABLE jobs ADD COLUMN pid_start REAL;
    ALTER TABLE job_images ADD COLUMN claimed_start REAL;
    """,
    # v4: a process is known by the lock it holds on owners/<owner> (a pid means nothing in another container's
    # PID namespace); a claim records which file it is about to place (placement.file_identity), so a resume
    # adopts that file and never another job's file that took the name.
    4: """
    ALTER TABLE jobs ADD COLUMN owner TEXT;
    ALTER TABLE job_images ADD COLUMN claimed_owner TEXT;
    ALTER TABLE job_images ADD COLUMN target_id TEXT;
    """,
    # v5: input images uploaded to a gateway (apimart) are kept with their expiry: a resumed job reuses a URL
    # still valid instead of uploading the file again (an upload is not idempotent).
    5: """
    CREATE TABLE job_uploads (
        job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
        sha256 TEXT NOT NULL,
        url TEXT NOT NULL,
        expires_at REAL NOT NULL,
        created_at REAL NOT NULL,
        PRIMARY KEY (job_id, sha256)
    );
    """,
}
