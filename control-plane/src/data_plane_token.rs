//! The token data planes authenticate with: given by the operator, or generated once into
//! `<data-dir>/data-plane.token` (mode 0600) and reused on later starts.

use crate::ControlPlaneError;
use canopy_core::TokenKind;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

pub const FILE_NAME: &str = "data-plane.token";

/// The data-plane token: `given`, or the one in the data dir (created if missing).
pub fn resolve(data_dir: &Path, given: Option<&str>) -> Result<String, ControlPlaneError> {
    if let Some(token) = given {
        canopy_core::token::validate_custom(token)
            .map_err(|e| ControlPlaneError::Config(format!("data-plane token: {e}")))?;
        return Ok(token.to_owned());
    }
    let path = data_dir.join(FILE_NAME);
    let err = |source| ControlPlaneError::DataPlaneToken {
        path: path.clone(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(raw) => {
            let token = raw.trim();
            if token.is_empty() {
                return Err(ControlPlaneError::Config(format!(
                    "{} is empty; delete it to generate a new one",
                    path.display()
                )));
            }
            tracing::info!(path = %path.display(), "data planes authenticate with the token in this file");
            Ok(token.to_owned())
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {
            let token = TokenKind::DataPlane.generate();
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .map_err(err)?;
            file.write_all(format!("{token}\n").as_bytes())
                .and_then(|()| file.sync_all())
                .map_err(err)?;
            tracing::info!(path = %path.display(), "generated a data-plane token; give this file to data planes");
            Ok(token)
        }
        Err(e) => Err(err(e)),
    }
}
