//! Why the Docker engine could not be asked.

use std::io;
use std::time::Duration;

/// The engine could not be asked, or gave no usable answer. Every variant maps to
/// `unknown`: it says nothing about the container itself.
///
/// The `Display` texts are what ends up in `error_message`, so they are short,
/// start with `docker:` and say what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DockerError {
    /// The unix socket file does not exist (Docker not installed, not mounted).
    #[error("docker: socket {0} not found")]
    SocketNotFound(String),
    /// The socket exists but this process may not open it.
    #[error("docker: permission denied on {0} (add the agent to the socket's group)")]
    PermissionDenied(String),
    /// Nothing listens on the socket or TCP address (engine stopped).
    #[error("docker: connection refused on {0} (is the engine running?)")]
    ConnectionRefused(String),
    /// The engine did not answer within the probe timeout.
    #[error("docker: timeout after {0:?}")]
    Timeout(Duration),
    /// `DOCKER_HOST` has a scheme this agent does not speak.
    #[error(
        "docker: unsupported DOCKER_HOST {0:?} (use unix:///path/to/docker.sock, tcp://host:port or http://host:port)"
    )]
    UnsupportedHost(String),
    /// The configured container reference cannot be a container name or id.
    #[error("docker: invalid container name {0:?}")]
    InvalidName(String),
    /// The engine answered with an error status other than "no such container".
    #[error("docker: engine answered {status}: {message}")]
    Engine { status: u16, message: String },
    /// Anything else (connection reset, undecodable answer, …).
    #[error("docker: {0}")]
    Other(String),
}

impl DockerError {
    /// Classifies a bollard error; `endpoint` is the socket path or TCP address, for the message.
    pub(crate) fn from_bollard(err: &bollard::errors::Error, endpoint: &str) -> DockerError {
        use bollard::errors::Error as B;
        match err {
            B::SocketNotFoundError(path) => DockerError::SocketNotFound(path.clone()),
            B::UnsupportedURISchemeError { uri } => DockerError::UnsupportedHost(uri.clone()),
            B::DockerResponseServerError {
                status_code,
                message,
            } => DockerError::Engine {
                status: *status_code,
                message: crate::classify::truncate(
                    &crate::classify::one_line(message),
                    crate::classify::MAX_DETAIL_CHARS,
                ),
            },
            // Only reachable if bollard's own (coarser) timeout fires before ours.
            B::RequestTimeoutError => DockerError::Other("timeout".to_owned()),
            // `#[error(transparent)]`: its `source()` skips the io::Error itself.
            B::IOError { err } => DockerError::from_io(err, endpoint),
            other => match find_io_error(other) {
                Some(io) => DockerError::from_io(io, endpoint),
                None => DockerError::Other(deepest_message(other)),
            },
        }
    }

    /// Classifies the I/O error underneath a failed connection.
    pub(crate) fn from_io(err: &io::Error, endpoint: &str) -> DockerError {
        match err.kind() {
            io::ErrorKind::NotFound => DockerError::SocketNotFound(endpoint.to_owned()),
            io::ErrorKind::PermissionDenied => DockerError::PermissionDenied(endpoint.to_owned()),
            io::ErrorKind::ConnectionRefused => DockerError::ConnectionRefused(endpoint.to_owned()),
            _ => DockerError::Other(format!("{endpoint}: {err}")),
        }
    }
}

/// The first `io::Error` in the source chain, if any.
fn find_io_error<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a io::Error> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = current {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            return Some(io);
        }
        current = e.source();
    }
    None
}

/// The innermost message of an error chain: usually the most specific one.
fn deepest_message(err: &(dyn std::error::Error + 'static)) -> String {
    let mut current = err;
    while let Some(next) = current.source() {
        current = next;
    }
    crate::classify::truncate(
        &crate::classify::one_line(&current.to_string()),
        crate::classify::MAX_DETAIL_CHARS,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_become_actionable_messages() {
        let sock = "/var/run/docker.sock";
        let cases = [
            (
                io::ErrorKind::NotFound,
                "docker: socket /var/run/docker.sock not found",
            ),
            (
                io::ErrorKind::PermissionDenied,
                "docker: permission denied on /var/run/docker.sock (add the agent to the socket's group)",
            ),
            (
                io::ErrorKind::ConnectionRefused,
                "docker: connection refused on /var/run/docker.sock (is the engine running?)",
            ),
        ];
        for (kind, expected) in cases {
            let err = DockerError::from_io(&io::Error::from(kind), sock);
            assert_eq!(err.to_string(), expected);
        }
    }

    #[test]
    fn io_errors_are_found_inside_bollard_errors() {
        let wrapped =
            bollard::errors::Error::from(io::Error::from(io::ErrorKind::PermissionDenied));
        assert_eq!(
            DockerError::from_bollard(&wrapped, "/s"),
            DockerError::PermissionDenied("/s".into())
        );
        let missing = bollard::errors::Error::SocketNotFoundError("/x.sock".into());
        assert_eq!(
            DockerError::from_bollard(&missing, "/x.sock").to_string(),
            "docker: socket /x.sock not found"
        );
    }
}
