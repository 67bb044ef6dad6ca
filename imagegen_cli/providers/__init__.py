"""Remote providers: profiles as data, request planning, the HTTP client and the two dialects."""
