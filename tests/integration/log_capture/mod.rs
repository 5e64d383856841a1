//! Captures everything logged on the current thread, for tests that check the API token
//! never reaches the logs.

use std::sync::{Arc, Mutex};

use tracing::subscriber::DefaultGuard;

/// A TRACE-level subscriber writing into memory, installed for the current thread until
/// dropped. Use it from a current-thread runtime so the client, hyper and a test server all
/// log through it.
pub struct CapturedLogs {
    buffer: Buffer,
    _guard: DefaultGuard,
}

impl CapturedLogs {
    /// Starts capturing.
    pub fn start() -> Self {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        CapturedLogs {
            buffer,
            _guard: tracing::subscriber::set_default(subscriber),
        }
    }

    /// Everything logged so far.
    pub fn text(&self) -> String {
        String::from_utf8(self.buffer.0.lock().unwrap().clone()).unwrap()
    }
}

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
