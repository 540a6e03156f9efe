"""The web console: server-side rendered pages over the same services the APIs use.

    GET /                      -> /console/models
    /console/signin, signout   sign in with an access key (API key, or AWS access key id + secret); local mode: none
    /console/<page>[/...]      one page per navigation entry (nav.py), each a module under views/ + a template
    /console/static/<file>     the CSS and the build-free JavaScript, shipped in the package

How a request runs: the app's router matches a console route like any other (web.view() builds it, dialect
"console-page" for pages, "console" for what the pages' scripts fetch: usage records of the playground's calls
say "console") and its host and origin checks hold for it too. web.view() then finds the signed-in principal
from the session cookie (session.py), refuses a state-changing request without the session's CSRF token or from
another origin (csrf.py), refuses an administrators' page to anyone else (nav.py's `admin` entries cover every
path under them), and calls the view with a Visit: the app's Context (the registry, Inference, AccessControl,
the stores), the request and the principal. Views call those services as the API routes do; errors are the one
error tree, rendered as a page or as JSON by errors.py.
"""
