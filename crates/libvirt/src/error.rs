//! libvirt's errors as ferry's: a kind taken from libvirt's error code and domain, beside
//! the message. The kind is data for decisions (retry or not); the message is for people.

use std::fmt;

use ferry_driver::{DriverError, ErrorKind, MoveError};
use virt::sys;

/// A failure on the driver's side: its kind and its message.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Failure {
    pub kind: ErrorKind,
    pub message: String,
}

impl Failure {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Failure {
        Failure { kind, message: message.into() }
    }

    /// The same kind of failure with its message put in context (`f` gets the message).
    pub fn reworded(self, f: impl FnOnce(&str) -> String) -> Failure {
        Failure { message: f(&self.message), kind: self.kind }
    }

    /// As a move that could not start.
    pub fn init(self) -> MoveError {
        MoveError::Init { kind: self.kind, reason: self.message }
    }

    /// As the failure of `action` on `host`.
    pub fn on(self, host: &str, action: &str) -> DriverError {
        DriverError::new(host, action, self.kind, self.message)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<virt::error::Error> for Failure {
    fn from(e: virt::error::Error) -> Failure {
        Failure { kind: kind_of(e.code().to_raw(), e.domain().to_raw()), message: e.message().to_string() }
    }
}

/// For the paths not yet typed (cleanup's listing, inventory): the message alone.
impl From<Failure> for String {
    fn from(f: Failure) -> String {
        f.message
    }
}

/// The kind of a libvirt error, from its code (`virErrorNumber`) and domain
/// (`virErrorDomain`), raw so that codes newer than the `virt` crate's enum still map.
/// A system or internal error raised by the RPC or remote layer is the connection failing
/// ("Cannot recv data", "End of file while reading data", "client socket is closed"), not
/// the hypervisor; in any other layer it is the hypervisor's own failure.
pub(crate) fn kind_of(code: sys::virErrorNumber, domain: sys::virErrorDomain) -> ErrorKind {
    let transport = matches!(domain, sys::VIR_FROM_RPC | sys::VIR_FROM_REMOTE);
    match code {
        sys::VIR_ERR_NO_CONNECT | sys::VIR_ERR_RPC | sys::VIR_ERR_INVALID_CONN => ErrorKind::Unreachable,
        sys::VIR_ERR_SYSTEM_ERROR | sys::VIR_ERR_INTERNAL_ERROR if transport => ErrorKind::Unreachable,
        sys::VIR_ERR_OPERATION_TIMEOUT | sys::VIR_ERR_AGENT_UNRESPONSIVE | sys::VIR_ERR_AGENT_COMMAND_TIMEOUT => {
            ErrorKind::TimedOut
        }
        sys::VIR_ERR_OPERATION_INVALID
        | sys::VIR_ERR_OPERATION_DENIED
        | sys::VIR_ERR_AUTH_FAILED
        | sys::VIR_ERR_AUTH_CANCELLED
        | sys::VIR_ERR_AUTH_UNAVAILABLE
        | sys::VIR_ERR_ACCESS_DENIED
        | sys::VIR_ERR_OPERATION_UNSUPPORTED
        | sys::VIR_ERR_NO_SUPPORT => ErrorKind::Refused,
        sys::VIR_ERR_NO_DOMAIN
        | sys::VIR_ERR_NO_STORAGE_POOL
        | sys::VIR_ERR_NO_STORAGE_VOL
        | sys::VIR_ERR_NO_DOMAIN_METADATA => ErrorKind::NotFound,
        sys::VIR_ERR_DOM_EXIST | sys::VIR_ERR_STORAGE_VOL_EXIST => ErrorKind::Conflict,
        sys::VIR_ERR_INTERNAL_ERROR | sys::VIR_ERR_OPERATION_FAILED | sys::VIR_ERR_SYSTEM_ERROR => ErrorKind::Internal,
        _ => ErrorKind::Other,
    }
}

#[cfg(test)]
mod tests {
    use ferry_driver::ErrorKind::{self, *};
    use virt::sys;

    use super::{kind_of, Failure};

    #[test]
    fn kinds_from_libvirt_codes_and_domains() {
        let table: &[(sys::virErrorNumber, sys::virErrorDomain, ErrorKind)] = &[
            // The connection: refused, reset, closed under a call.
            (sys::VIR_ERR_NO_CONNECT, sys::VIR_FROM_NONE, Unreachable),
            (sys::VIR_ERR_RPC, sys::VIR_FROM_RPC, Unreachable),
            (sys::VIR_ERR_INVALID_CONN, sys::VIR_FROM_NONE, Unreachable),
            (sys::VIR_ERR_SYSTEM_ERROR, sys::VIR_FROM_RPC, Unreachable),
            (sys::VIR_ERR_SYSTEM_ERROR, sys::VIR_FROM_REMOTE, Unreachable),
            (sys::VIR_ERR_INTERNAL_ERROR, sys::VIR_FROM_RPC, Unreachable),
            // The same codes from the hypervisor or storage: its own failure.
            (sys::VIR_ERR_SYSTEM_ERROR, sys::VIR_FROM_STORAGE, Internal),
            (sys::VIR_ERR_INTERNAL_ERROR, sys::VIR_FROM_QEMU, Internal),
            (sys::VIR_ERR_OPERATION_FAILED, sys::VIR_FROM_QEMU, Internal),
            (sys::VIR_ERR_OPERATION_TIMEOUT, sys::VIR_FROM_QEMU, TimedOut),
            (sys::VIR_ERR_AGENT_UNRESPONSIVE, sys::VIR_FROM_QEMU, TimedOut),
            (sys::VIR_ERR_AGENT_COMMAND_TIMEOUT, sys::VIR_FROM_QEMU, TimedOut),
            (sys::VIR_ERR_OPERATION_INVALID, sys::VIR_FROM_QEMU, Refused),
            (sys::VIR_ERR_OPERATION_DENIED, sys::VIR_FROM_NONE, Refused),
            (sys::VIR_ERR_AUTH_FAILED, sys::VIR_FROM_REMOTE, Refused),
            (sys::VIR_ERR_ACCESS_DENIED, sys::VIR_FROM_ACCESS, Refused),
            (sys::VIR_ERR_OPERATION_UNSUPPORTED, sys::VIR_FROM_QEMU, Refused),
            (sys::VIR_ERR_NO_DOMAIN, sys::VIR_FROM_QEMU, NotFound),
            (sys::VIR_ERR_NO_STORAGE_POOL, sys::VIR_FROM_STORAGE, NotFound),
            (sys::VIR_ERR_NO_STORAGE_VOL, sys::VIR_FROM_STORAGE, NotFound),
            (sys::VIR_ERR_NO_DOMAIN_METADATA, sys::VIR_FROM_DOMAIN, NotFound),
            (sys::VIR_ERR_DOM_EXIST, sys::VIR_FROM_QEMU, Conflict),
            (sys::VIR_ERR_STORAGE_VOL_EXIST, sys::VIR_FROM_STORAGE, Conflict),
            (sys::VIR_ERR_XML_ERROR, sys::VIR_FROM_DOMAIN, Other),
            (sys::VIR_ERR_OPERATION_ABORTED, sys::VIR_FROM_QEMU, Other),
            // A code newer than this table.
            (10_000, sys::VIR_FROM_QEMU, Other),
        ];
        for &(code, domain, kind) in table {
            assert_eq!(kind_of(code, domain), kind, "code {code}, domain {domain}");
        }
    }

    #[test]
    fn a_libvirt_error_keeps_its_message_and_gets_its_kind() {
        // What the `virt` crate returns for a bad argument it caught itself.
        let nul = std::ffi::CString::new("a\0b").expect_err("an inner NUL byte");
        let failure = Failure::from(virt::error::Error::from(nul));
        assert_eq!(failure.kind, Other);
        assert!(failure.message.contains("Null byte"), "{}", failure.message);
        let reworded = failure.reworded(|m| format!("could not look: {m}"));
        assert_eq!(reworded.kind, Other);
        assert!(reworded.to_string().starts_with("could not look: Null byte"), "{reworded}");
    }
}
