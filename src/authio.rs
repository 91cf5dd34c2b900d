//! The I/O half of authentication, for both roles: reads and writes the MD5 and EC-SRP5
//! messages on connection 0 and calls the pure code in `auth/`.
//!
//! Must not: implement any cryptography itself.

use std::net::{SocketAddr, TcpStream};

use crate::config::ClientConfig;
use crate::error::{Error, Result};
use crate::wire::Reply;

/// Client side of the MD5 challenge (after `02 00 00 00`).
pub fn client_md5(_s: &mut TcpStream, _cfg: &ClientConfig, _server: SocketAddr) -> Result<Reply> {
    Err(Error::Auth {
        method: "md5",
        detail: "not supported by this build yet".into(),
    })
}

/// Client side of EC-SRP5 (after `03 00 00 00`).
pub fn client_ecsrp5(
    _s: &mut TcpStream,
    _cfg: &ClientConfig,
    _server: SocketAddr,
) -> Result<Reply> {
    Err(Error::Auth {
        method: "ecsrp5",
        detail: "not supported by this build yet".into(),
    })
}

/// The server's accounts and offered method.
pub struct ServerAccounts {
    method: crate::auth::AuthMethod,
}

impl ServerAccounts {
    /// Loads the accounts of the configuration.
    pub fn new(cfg: &crate::config::ServerConfig) -> Result<Self> {
        Ok(ServerAccounts { method: cfg.auth })
    }

    /// The method offered.
    pub fn method(&self) -> crate::auth::AuthMethod {
        self.method
    }

    /// Runs the offered method on connection 0; returns the user name on success.
    pub fn authenticate(&self, _s: &mut TcpStream, _peer: SocketAddr) -> Result<Option<String>> {
        match self.method {
            crate::auth::AuthMethod::None => Ok(None),
            m => Err(Error::Auth {
                method: m.as_str(),
                detail: "not supported by this build yet".into(),
            }),
        }
    }
}
