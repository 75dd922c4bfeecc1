//! Incremental parser for `text/event-stream` (the HTML SSE format), used for both
//! streamable-HTTP response streams and the legacy HTTP+SSE transport.
//!
//! Handles `\n`, `\r\n` and `\r` line ends split anywhere across chunks, comments,
//! multi-line `data`, and bounds the size of one event so a broken upstream cannot make
//! us buffer without end.

use std::collections::VecDeque;

/// Largest event (all its lines together) we buffer.
pub(crate) const MAX_EVENT_BYTES: usize = 16 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Event {
    /// `event:` field; `message` when absent.
    pub event: String,
    pub data: String,
    pub id: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum EventStreamError {
    #[error("an event-stream event exceeds {MAX_EVENT_BYTES} bytes")]
    TooLarge,
    #[error("an event-stream line is not UTF-8")]
    NotUtf8,
}

#[derive(Debug, Default)]
pub(crate) struct EventParser {
    line: Vec<u8>,
    after_cr: bool,
    event: Option<String>,
    data: String,
    has_data: bool,
    id: Option<String>,
    size: usize,
}

impl EventParser {
    /// Feeds one chunk; complete events are appended to `out`.
    pub(crate) fn push(
        &mut self,
        mut chunk: &[u8],
        out: &mut VecDeque<Event>,
    ) -> Result<(), EventStreamError> {
        while !chunk.is_empty() {
            if self.after_cr && chunk[0] == b'\n' {
                // Second half of a CRLF split across chunks (or not): already ended the line.
                chunk = &chunk[1..];
            }
            self.after_cr = false;
            match chunk.iter().position(|&b| b == b'\n' || b == b'\r') {
                Some(pos) => {
                    self.line.extend_from_slice(&chunk[..pos]);
                    self.after_cr = chunk[pos] == b'\r';
                    chunk = &chunk[pos + 1..];
                    self.end_line(out)?;
                }
                None => {
                    self.line.extend_from_slice(chunk);
                    chunk = &[];
                }
            }
            if self.line.len() + self.size > MAX_EVENT_BYTES {
                return Err(EventStreamError::TooLarge);
            }
        }
        Ok(())
    }

    fn end_line(&mut self, out: &mut VecDeque<Event>) -> Result<(), EventStreamError> {
        let line = std::mem::take(&mut self.line);
        if line.is_empty() {
            if self.has_data {
                out.push_back(Event {
                    event: self.event.take().unwrap_or_else(|| "message".to_owned()),
                    data: std::mem::take(&mut self.data),
                    id: self.id.clone(),
                });
            }
            self.event = None;
            self.data.clear();
            self.has_data = false;
            self.size = 0;
            return Ok(());
        }
        self.size += line.len();
        let line = std::str::from_utf8(&line).map_err(|_| EventStreamError::NotUtf8)?;
        if line.starts_with(':') {
            return Ok(());
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "event" => self.event = Some(value.to_owned()),
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "id" if !value.contains('\0') => self.id = Some(value.to_owned()),
            // `retry` and unknown fields: nothing we act on.
            _ => {}
        }
        Ok(())
    }
}

/// Events read from a streaming HTTP response body (hyper's for streamable HTTP, reqwest's
/// for the legacy SSE transport).
pub(crate) struct ResponseEvents<B> {
    body: B,
    parser: EventParser,
    queue: VecDeque<Event>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    #[error(transparent)]
    Parse(#[from] EventStreamError),
    #[error("reading the event stream failed: {0}")]
    Http(String),
}

impl<B> ResponseEvents<B>
where
    B: http_body::Body<Data = bytes::Bytes> + Unpin,
    B::Error: std::error::Error + 'static,
{
    pub(crate) fn new(body: B) -> Self {
        Self {
            body,
            parser: EventParser::default(),
            queue: VecDeque::new(),
        }
    }

    /// The next complete event; `None` when the stream ended.
    pub(crate) async fn next(&mut self) -> Result<Option<Event>, ReadError> {
        use http_body_util::BodyExt;
        loop {
            if let Some(ev) = self.queue.pop_front() {
                return Ok(Some(ev));
            }
            match self.body.frame().await {
                Some(Ok(frame)) => {
                    // Trailers carry no events.
                    if let Ok(chunk) = frame.into_data() {
                        self.parser.push(&chunk, &mut self.queue)?;
                    }
                }
                None => return Ok(None),
                Some(Err(e)) => return Err(ReadError::Http(canopy_core::error_chain(&e))),
            }
        }
    }
}

#[cfg(test)]
mod tests;
