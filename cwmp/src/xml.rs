//! A hardened reader that turns an envelope into a small element tree.
//!
//! quick-xml never expands entities it was not told about, but a DOCTYPE is refused outright
//! anyway: CWMP has no use for one, and refusing it removes the whole class of entity-expansion
//! and external-entity attacks instead of relying on them being ignored. Depth, element count
//! and text length are bounded while reading, so a hostile body costs at most what the limits
//! allow before it is rejected.

use quick_xml::NsReader;
use quick_xml::events::Event as X;
use quick_xml::name::ResolveResult;

use crate::error::{Error, Result};
use crate::{Limits, Version};

/// SOAP 1.1 envelope namespace.
pub(crate) const SOAP_ENV: &str = "http://schemas.xmlsoap.org/soap/envelope/";

/// Which namespace an element is in, as far as CWMP cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Ns {
    /// No namespace (CWMP child elements are unqualified).
    None,
    Soap,
    Cwmp(Version),
    Other(String),
}

impl Ns {
    pub(crate) fn describe(&self) -> String {
        match self {
            Ns::None => String::new(),
            Ns::Soap => SOAP_ENV.to_string(),
            Ns::Cwmp(v) => v.namespace().to_string(),
            Ns::Other(s) => s.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Element {
    pub(crate) ns: Ns,
    pub(crate) name: String,
    /// Attributes by local name (`type`, `arrayType`, `mustUnderstand`).
    pub(crate) attrs: Vec<(String, String)>,
    pub(crate) text: String,
    pub(crate) children: Vec<Element>,
    /// A CWMP namespace declared on this element (`xmlns:cwmp="…"`), used or not.
    pub(crate) declared_cwmp: Option<Version>,
}

impl Element {
    pub(crate) fn attr(&self, local: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == local)
            .map(|(_, v)| v.as_str())
    }

    /// The first child with this local name.
    pub(crate) fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    pub(crate) fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> {
        self.children.iter().filter(move |c| c.name == name)
    }
}

fn ns_of(r: &ResolveResult<'_>) -> Ns {
    match r {
        ResolveResult::Bound(ns) => {
            let uri = String::from_utf8_lossy(ns.as_ref());
            if uri == SOAP_ENV {
                Ns::Soap
            } else if let Some(v) = Version::from_namespace(&uri) {
                Ns::Cwmp(v)
            } else {
                Ns::Other(uri.chars().take(120).collect())
            }
        }
        ResolveResult::Unbound => Ns::None,
        ResolveResult::Unknown(p) => Ns::Other(format!(
            "undeclared prefix {}",
            String::from_utf8_lossy(p)
                .chars()
                .take(40)
                .collect::<String>()
        )),
    }
}

fn xml_err(e: impl std::fmt::Display) -> Error {
    Error::Xml(e.to_string().chars().take(200).collect())
}

/// Reads `bytes` into a tree; `Ok(None)` when there is no element at all.
pub(crate) fn parse(bytes: &[u8], limits: &Limits) -> Result<Option<Element>> {
    if bytes.len() > limits.max_envelope_bytes {
        return Err(Error::TooLarge {
            size: bytes.len(),
            limit: limits.max_envelope_bytes,
        });
    }
    let text = std::str::from_utf8(bytes).map_err(xml_err)?;
    let mut reader = NsReader::from_str(text);
    reader.config_mut().expand_empty_elements = true;
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let mut elements = 0usize;
    loop {
        let (ns, ev) = reader.read_resolved_event().map_err(xml_err)?;
        match ev {
            X::Start(s) => {
                if root.is_some() {
                    return Err(Error::Xml("content after the root element".into()));
                }
                if stack.len() >= limits.max_depth {
                    return Err(Error::TooDeep {
                        limit: limits.max_depth,
                    });
                }
                elements += 1;
                if elements > limits.max_elements {
                    return Err(Error::TooManyElements {
                        limit: limits.max_elements,
                    });
                }
                let name = String::from_utf8_lossy(s.local_name().as_ref()).into_owned();
                let mut attrs = Vec::new();
                let mut declared_cwmp = None;
                for a in s.attributes() {
                    let a = a.map_err(xml_err)?;
                    let key = a.key.local_name();
                    let key = String::from_utf8_lossy(key.as_ref()).into_owned();
                    if a.key.as_ref().starts_with(b"xmlns") {
                        if let Ok(v) = a.unescape_value() {
                            declared_cwmp = declared_cwmp.or(Version::from_namespace(&v));
                        }
                        continue;
                    }
                    let v = a.unescape_value().map_err(xml_err)?;
                    if v.len() > limits.max_text_bytes {
                        return Err(Error::TextTooLong {
                            element: name,
                            limit: limits.max_text_bytes,
                        });
                    }
                    attrs.push((key, v.into_owned()));
                }
                stack.push(Element {
                    ns: ns_of(&ns),
                    name,
                    attrs,
                    text: String::new(),
                    children: Vec::new(),
                    declared_cwmp,
                });
            }
            X::End(_) => {
                let Some(done) = stack.pop() else {
                    return Err(Error::Xml("unbalanced end tag".into()));
                };
                match stack.last_mut() {
                    Some(parent) => {
                        // Indentation before the first child is not content.
                        if parent.children.is_empty() && parent.text.trim().is_empty() {
                            parent.text.clear();
                        }
                        parent.children.push(done);
                    }
                    None => root = Some(done),
                }
            }
            X::Text(t) => {
                let s = t.decode().map_err(xml_err)?;
                push_text(&mut stack, &s, limits)?;
            }
            X::CData(c) => {
                let s = std::str::from_utf8(c.as_ref()).map_err(xml_err)?;
                push_text(&mut stack, s, limits)?;
            }
            X::GeneralRef(r) => {
                let name = r.decode().map_err(xml_err)?;
                let resolved: String = if let Some(c) = r.resolve_char_ref().map_err(xml_err)? {
                    c.to_string()
                } else if let Some(s) = quick_xml::escape::resolve_predefined_entity(&name) {
                    s.to_string()
                } else {
                    return Err(Error::Entity(name.chars().take(40).collect()));
                };
                push_text(&mut stack, &resolved, limits)?;
            }
            X::DocType(_) => return Err(Error::Doctype),
            X::Empty(_) => return Err(Error::Xml("unexpanded empty element".into())),
            X::Decl(_) | X::PI(_) | X::Comment(_) => {}
            X::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err(Error::Xml("document ends inside an element".into()));
    }
    Ok(root)
}

fn push_text(stack: &mut [Element], s: &str, limits: &Limits) -> Result<()> {
    match stack.last_mut() {
        // Indentation between children is not content.
        Some(e) if !e.children.is_empty() && s.trim().is_empty() => Ok(()),
        Some(e) => {
            if e.text.len() + s.len() > limits.max_text_bytes {
                return Err(Error::TextTooLong {
                    element: e.name.clone(),
                    limit: limits.max_text_bytes,
                });
            }
            e.text.push_str(s);
            Ok(())
        }
        None if s.trim().is_empty() => Ok(()),
        None => Err(Error::Xml("text outside the root element".into())),
    }
}

/// Escapes text for element content and attribute values.
pub(crate) fn escape(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
}
