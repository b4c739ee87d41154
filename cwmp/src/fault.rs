//! CWMP fault codes (TR-069 §A.5.1 for the ACS, §A.3.2.x for the CPE), as named in the XSDs.

/// 8000: method not supported (ACS).
pub const METHOD_NOT_SUPPORTED: u32 = 8000;
/// 8001: request denied (ACS; no reason given).
pub const REQUEST_DENIED: u32 = 8001;
/// 8002: internal error (ACS).
pub const INTERNAL_ERROR: u32 = 8002;
/// 8003: invalid arguments (ACS).
pub const INVALID_ARGUMENTS: u32 = 8003;
/// 8004: resources exceeded (ACS).
pub const RESOURCES_EXCEEDED: u32 = 8004;
/// 8005: retry request (ACS): the CPE tries the request again later.
pub const RETRY_REQUEST: u32 = 8005;
/// 8006: ACS version incompatible with CPE (CWMP 1.4).
pub const VERSION_INCOMPATIBLE: u32 = 8006;

/// The fault string the XSD gives a code, for codes an ACS or a CPE commonly sends.
pub fn describe(code: u32) -> &'static str {
    match code {
        8000 | 9000 => "Method not supported",
        8001 | 9001 => "Request denied",
        8002 | 9002 => "Internal error",
        8003 | 9003 => "Invalid arguments",
        8004 | 9004 => "Resources exceeded",
        8005 => "Retry request",
        8006 => "ACS version incompatible with CPE",
        9005 => "Invalid parameter name",
        9006 => "Invalid parameter type",
        9007 => "Invalid parameter value",
        9008 => "Attempt to set a non-writable parameter",
        9009 => "Notification request rejected",
        9010 => "File transfer failure",
        9011 => "Upload failure",
        9012 => "File transfer server authentication failure",
        9013 => "Unsupported protocol for file transfer",
        _ => "CWMP fault",
    }
}

/// The SOAP `faultcode` for a CWMP code: `Client` when the request was wrong, `Server`
/// otherwise (the CPE fault table's convention, applied to both ranges).
pub fn soap_faultcode(code: u32) -> &'static str {
    match code {
        8003 | 8005 | 8006 | 9003 | 9005..=9008 => "Client",
        _ => "Server",
    }
}
