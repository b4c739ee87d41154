//! The one error type of this crate. Every variant maps to the CWMP fault code an ACS answers
//! with ([`Error::fault_code`]) and to a bounded metric label ([`Error::reason`]).

/// What was wrong with an envelope or a DeviceId.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The body is larger than [`crate::Limits::max_envelope_bytes`].
    #[error("envelope of {size} bytes exceeds the {limit}-byte limit")]
    TooLarge { size: usize, limit: usize },
    /// Elements nest deeper than [`crate::Limits::max_depth`].
    #[error("elements nest deeper than {limit} levels")]
    TooDeep { limit: usize },
    /// More elements than [`crate::Limits::max_elements`].
    #[error("more than {limit} elements")]
    TooManyElements { limit: usize },
    /// One element's text is longer than [`crate::Limits::max_text_bytes`].
    #[error("text of <{element}> exceeds {limit} bytes")]
    TextTooLong { element: String, limit: usize },
    /// A `<!DOCTYPE>`: a DTD could declare entities, so none is accepted.
    #[error("document type declarations are not accepted")]
    Doctype,
    /// An entity reference other than the five XML predefined ones or a character reference.
    #[error("entity reference &{0}; is not allowed")]
    Entity(String),
    /// The bytes are not well-formed XML (or not UTF-8).
    #[error("malformed XML: {0}")]
    Xml(String),
    /// The document is not a SOAP 1.1 envelope.
    #[error("not a SOAP envelope: {0}")]
    NotSoap(String),
    /// An element is in a namespace CWMP does not use there.
    #[error("<{element}> is in namespace {found:?}, expected {expected}")]
    WrongNamespace {
        element: String,
        found: String,
        expected: &'static str,
    },
    /// A header with `mustUnderstand="1"` this ACS does not implement.
    #[error("header <{0}> must be understood but is not supported")]
    MustUnderstand(String),
    /// A required element is missing.
    #[error("<{parent}> has no <{child}>")]
    Missing {
        parent: &'static str,
        child: &'static str,
    },
    /// A field breaks the CWMP schema (type, length, pattern).
    #[error("{field}: {detail}")]
    InvalidField { field: &'static str, detail: String },
    /// An RPC this codec does not know.
    #[error("method {0:?} is not supported")]
    UnsupportedMethod(String),
    /// DeviceId cannot become an Endpoint ID.
    #[error("no Endpoint ID can be derived: {0}")]
    DeviceId(String),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The ACS fault code (TR-069 §A.5.1) for a CPE request that failed this way.
    pub fn fault_code(&self) -> u32 {
        match self {
            Error::UnsupportedMethod(_) | Error::MustUnderstand(_) => {
                crate::fault::METHOD_NOT_SUPPORTED
            }
            Error::TooLarge { .. }
            | Error::TooDeep { .. }
            | Error::TooManyElements { .. }
            | Error::TextTooLong { .. } => crate::fault::RESOURCES_EXCEEDED,
            Error::DeviceId(_) => crate::fault::REQUEST_DENIED,
            _ => crate::fault::INVALID_ARGUMENTS,
        }
    }

    /// A stable, bounded label for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::TooLarge { .. } => "too_large",
            Error::TooDeep { .. } => "too_deep",
            Error::TooManyElements { .. } => "too_many_elements",
            Error::TextTooLong { .. } => "text_too_long",
            Error::Doctype => "doctype",
            Error::Entity(_) => "entity",
            Error::Xml(_) => "malformed_xml",
            Error::NotSoap(_) => "not_soap",
            Error::WrongNamespace { .. } => "wrong_namespace",
            Error::MustUnderstand(_) => "must_understand",
            Error::Missing { .. } => "missing_element",
            Error::InvalidField { .. } => "invalid_field",
            Error::UnsupportedMethod(_) => "unsupported_method",
            Error::DeviceId(_) => "device_id",
        }
    }
}
