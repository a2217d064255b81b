"""Content-Security-Policy on every response: scripts, styles, fonts and images come from this server only.

No inline or injected script can run (model output is untrusted text), nothing loads from another origin (the
product works offline), and pages cannot be framed. JSON data blocks (`json_script`) are not scripts to the
browser, so they need no exception. Inline styles stay allowed: server-computed widths (progress bars,
intervals), htmx's indicator rules, DRF's and the admin's own `<style>`; model output cannot reach them, as
the markdown sanitizer keeps no style but a table cell's text-align.
"""

POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        response.headers.setdefault("Content-Security-Policy", POLICY)
        return response
