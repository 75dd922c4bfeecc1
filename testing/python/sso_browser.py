"""A headless browser for `canopy login --sso` tests against testing/node/idp.mjs.

    python sso_browser.py register ISSUER          -> prints a new public CLI client id
    python sso_browser.py code AUTH_URL            -> prints the URL the provider redirects to
    python sso_browser.py device VERIFICATION_URL  -> enters and confirms the device code

Standard library only: cookies (the provider's interaction session), redirects, and the
provider's auto-submitted / confirm forms (posted with their hidden fields)."""

import html
import http.cookiejar
import json
import re
import sys
import urllib.parse
import urllib.request


class StopAtLoopback(urllib.request.HTTPRedirectHandler):
    """Does not follow the redirect to the CLI's loopback callback: that URL is the answer."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if urllib.parse.urlsplit(newurl).path == "/callback":
            raise Found(newurl)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


class Found(Exception):
    pass


def opener():
    return urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()), StopAtLoopback()
    )


def form_of(page, base):
    m = re.search(r"<form[^>]*action=\"([^\"]+)\"", page)
    if not m:
        return None
    fields = {}
    for tag in re.findall(r"<input[^>]*>", page):
        name = re.search(r"name=\"([^\"]+)\"", tag)
        value = re.search(r"value=\"([^\"]*)\"", tag)
        if name and value:
            fields[html.unescape(name.group(1))] = html.unescape(value.group(1))
    return urllib.parse.urljoin(base, html.unescape(m.group(1))), fields


def register(issuer):
    body = json.dumps({
        "application_type": "native",
        "client_name": "canopy CLI (test)",
        "redirect_uris": ["http://127.0.0.1/callback"],
        "grant_types": ["authorization_code", "refresh_token",
                        "urn:ietf:params:oauth:grant-type:device_code"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
    }).encode()
    req = urllib.request.Request(issuer + "/reg", data=body,
                                 headers={"content-type": "application/json"})
    print(json.load(urllib.request.urlopen(req))["client_id"])


def code(url):
    try:
        page = opener().open(url).read().decode()
    except Found as f:
        print(f.args[0])
        return
    sys.exit(f"the provider did not redirect to the callback: {page[:500]}")


def device(url):
    o = opener()
    resp = o.open(url)
    page, base = resp.read().decode(), resp.geturl()
    # The auto-submitted form, then the confirm form; then the sign-in redirects.
    for _ in range(3):
        form = form_of(page, base)
        if form is None:
            break
        action, fields = form
        resp = o.open(action, urllib.parse.urlencode(fields).encode())
        page, base = resp.read().decode(), resp.geturl()
    if "success" not in page.lower() and "sign-in" not in page.lower():
        sys.exit(f"device sign-in did not end in success: {page[:500]}")


if __name__ == "__main__":
    {"register": register, "code": code, "device": device}[sys.argv[1]](sys.argv[2])
