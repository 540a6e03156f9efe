"""Who is calling: principals, their credentials, and how each dialect's credentials are verified."""
