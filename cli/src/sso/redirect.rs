//! The redirect back to the CLI after the person signed in: a one-shot HTTP listener on
//! `http://127.0.0.1:<random port>/callback` (RFC 8252 §7.3: loopback IP, not `localhost`),
//! and the same checks for a redirected URL (or bare code) the person pastes instead.
//!
//! A redirect must carry this sign-in's `state`; one that does not (a stale tab, or a page
//! trying to slip its own code in) is answered with an error page and otherwise ignored.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const CALLBACK_PATH: &str = "/callback";
/// A browser's request head is far smaller; more is not a browser.
const MAX_HEAD: usize = 16 * 1024;
/// A connection that sends nothing (a port scanner, a pre-connect) must not block the sign-in.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum RedirectError {
    #[error("the identity provider refused the sign-in: {0}")]
    Denied(String),
    #[error("the redirect does not carry this sign-in's state (stale or forged); start again")]
    StateMismatch,
    #[error("the redirect carries no authorization code")]
    NoCode,
}

/// The authorization code of a redirect's query string, after checking `state`.
pub fn code_from_query(query: &str, state: &str) -> Result<String, RedirectError> {
    let mut code = None;
    let mut got_state = None;
    let mut error = None;
    let mut description = None;
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        match k.as_ref() {
            "code" => code = Some(v.into_owned()),
            "state" => got_state = Some(v.into_owned()),
            "error" => error = Some(v.into_owned()),
            "error_description" => description = Some(v.into_owned()),
            _ => {}
        }
    }
    if got_state.as_deref() != Some(state) {
        return Err(RedirectError::StateMismatch);
    }
    if let Some(error) = error {
        let text = match description {
            Some(d) => format!("{} ({})", printable(&error), printable(&d)),
            None => printable(&error),
        };
        return Err(RedirectError::Denied(text));
    }
    code.filter(|c| !c.is_empty()).ok_or(RedirectError::NoCode)
}

/// What the person pasted: the whole redirected URL (its `state` is checked), or just the
/// code (PKCE still binds it to this sign-in).
pub fn code_from_pasted(input: &str, state: &str) -> Result<String, RedirectError> {
    let input = input.trim();
    if input.is_empty() {
        return Err(RedirectError::NoCode);
    }
    let looks_like_url = input.contains("://") || input.contains('?') || input.contains("code=");
    if !looks_like_url {
        if input.chars().any(char::is_whitespace) {
            return Err(RedirectError::NoCode);
        }
        return Ok(input.to_owned());
    }
    let after = input.split_once('?').map_or(input, |(_, q)| q);
    let query = after.split_once('#').map_or(after, |(q, _)| q);
    code_from_query(query, state)
}

/// Text from the provider, safe for one terminal line.
fn printable(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(300).collect()
}

/// The listener the browser is sent back to.
pub struct Loopback {
    listener: TcpListener,
    redirect_uri: String,
}

impl Loopback {
    pub async fn bind() -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let port = listener.local_addr()?.port();
        Ok(Self {
            listener,
            redirect_uri: format!("http://127.0.0.1:{port}{CALLBACK_PATH}"),
        })
    }

    pub fn redirect_uri(&self) -> &str {
        &self.redirect_uri
    }

    /// Serves until a redirect with this `state` arrives; its code, or the provider's refusal.
    pub async fn wait(&self, state: &str) -> Result<String, RedirectError> {
        loop {
            let Ok((stream, _)) = self.listener.accept().await else {
                continue;
            };
            if let Some(outcome) = serve_one(stream, state).await {
                return outcome;
            }
        }
    }
}

/// Answers one connection; `Some` when it was this sign-in's redirect.
async fn serve_one(mut stream: TcpStream, state: &str) -> Option<Result<String, RedirectError>> {
    let target = match tokio::time::timeout(READ_TIMEOUT, request_target(&mut stream)).await {
        Ok(Some(t)) => t,
        _ => return None,
    };
    let (path, query) = target.split_once('?').unwrap_or((target.as_str(), ""));
    if path != CALLBACK_PATH {
        respond(&mut stream, "404 Not Found", "Not found.").await;
        return None;
    }
    match code_from_query(query, state) {
        Ok(code) => {
            respond(
                &mut stream,
                "200 OK",
                "Signed in. You can close this tab and return to the terminal.",
            )
            .await;
            Some(Ok(code))
        }
        Err(RedirectError::StateMismatch) => {
            respond(
                &mut stream,
                "400 Bad Request",
                "This sign-in link is stale or was not started by this canopy command.",
            )
            .await;
            None
        }
        Err(e) => {
            respond(
                &mut stream,
                "400 Bad Request",
                "Sign-in failed; see the terminal.",
            )
            .await;
            Some(Err(e))
        }
    }
}

/// The request target of `GET <target> HTTP/1.1`.
async fn request_target(stream: &mut TcpStream) -> Option<String> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await.ok()?;
        if n == 0 || head.len() + n > MAX_HEAD {
            return None;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = head.split(|b| *b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?.trim_end();
    let mut parts = line.split(' ');
    let method = parts.next()?;
    let target = parts.next()?;
    (method == "GET").then(|| target.to_owned())
}

async fn respond(stream: &mut TcpStream, status: &str, text: &str) {
    let body = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>canopy</title></head>\
         <body><p>{text}</p></body></html>"
    );
    let reply = format!(
        "HTTP/1.1 {status}\r\ncontent-type: text/html; charset=utf-8\r\ncontent-length: {}\r\n\
         cache-control: no-store\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    // The browser going away does not change the outcome.
    let _ = stream.write_all(reply.as_bytes()).await;
    let _ = stream.shutdown().await;
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
mod tests {
    use super::*;

    #[test]
    fn query_needs_the_state_and_a_code() {
        assert_eq!(code_from_query("code=abc&state=s1", "s1"), Ok("abc".into()));
        assert_eq!(
            code_from_query("code=abc&state=other", "s1"),
            Err(RedirectError::StateMismatch)
        );
        assert_eq!(
            code_from_query("code=abc", "s1"),
            Err(RedirectError::StateMismatch)
        );
        assert_eq!(
            code_from_query("state=s1", "s1"),
            Err(RedirectError::NoCode)
        );
        assert_eq!(
            code_from_query(
                "error=access_denied&error_description=no%0Away&state=s1",
                "s1"
            ),
            Err(RedirectError::Denied("access_denied (noway)".into()))
        );
        // An error without our state is someone else's redirect, not the provider's answer.
        assert_eq!(
            code_from_query("error=access_denied", "s1"),
            Err(RedirectError::StateMismatch)
        );
    }

    #[test]
    fn pasted_url_or_code() {
        assert_eq!(
            code_from_pasted(
                "  http://127.0.0.1:5555/callback?code=c%2B1&state=s1&iss=x#frag \n",
                "s1"
            ),
            Ok("c+1".into())
        );
        assert_eq!(
            code_from_pasted("http://127.0.0.1:5555/callback?code=c&state=zz", "s1"),
            Err(RedirectError::StateMismatch)
        );
        assert_eq!(
            code_from_pasted("c0de-value", "s1"),
            Ok("c0de-value".into())
        );
        assert_eq!(code_from_pasted("  ", "s1"), Err(RedirectError::NoCode));
        assert_eq!(
            code_from_pasted("two words", "s1"),
            Err(RedirectError::NoCode)
        );
    }

    async fn get(uri: &str, path: &str) -> String {
        let addr = uri
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap()
            .to_owned();
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn loopback_ignores_strays_and_returns_the_code() {
        let lb = Loopback::bind().await.unwrap();
        let uri = lb.redirect_uri().to_owned();
        assert!(uri.starts_with("http://127.0.0.1:") && uri.ends_with("/callback"));
        let waiter = tokio::spawn(async move { lb.wait("st").await });
        assert!(get(&uri, "/favicon.ico").await.starts_with("HTTP/1.1 404"));
        assert!(get(&uri, "/callback?code=x&state=forged")
            .await
            .starts_with("HTTP/1.1 400"));
        assert!(get(&uri, "/callback?code=good&state=st")
            .await
            .starts_with("HTTP/1.1 200"));
        assert_eq!(waiter.await.unwrap(), Ok("good".into()));
    }
}
