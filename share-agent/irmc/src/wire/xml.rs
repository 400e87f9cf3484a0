//! The XML both SCCI documents and `/report.xml` are made of: escaping for
//! everything this crate builds, and a tiny fallible DOM for everything it
//! parses.

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};

use super::{WireError, malformed};

/// Escapes a value for XML text or attribute content.
pub fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// Deepest element nesting accepted (real iRMC documents stay under 15).
pub const MAX_DEPTH: usize = 64;

/// Most elements plus attributes accepted in one document. A real S4 `report.xml`
/// (48 KB) has about 1,100 elements and 500 attributes; SCCI replies have a few dozen.
/// Each parsed node costs around a hundred bytes, so this bounds the tree to a few MB
/// whatever the reply: 8 MiB of `<a/>` would otherwise become two million elements.
pub const MAX_NODES: usize = 20_000;

/// Most attributes on one element (real elements carry fewer than ten).
pub const MAX_ATTRIBUTES: usize = 256;

/// Largest document accepted, in bytes (real documents stay under 100 KB).
pub const MAX_DOCUMENT_BYTES: usize = 2 * 1024 * 1024;

/// A parsed XML element: enough structure for the small iRMC documents.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Element {
    /// Tag name (with prefix, if any).
    pub name: String,
    /// Attributes in document order, values unescaped.
    pub attrs: Vec<(String, String)>,
    /// Child elements in document order.
    pub children: Vec<Element>,
    /// Concatenated, unescaped text content (not trimmed).
    pub text: String,
}

impl Element {
    /// The value of attribute `name`.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first child called `name`.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// All children called `name`.
    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// Follows a `/`-separated path of child names.
    pub fn path(&self, path: &str) -> Option<&Element> {
        path.split('/').try_fold(self, |el, name| el.child(name))
    }

    /// Trimmed text.
    pub fn text_trimmed(&self) -> &str {
        self.text.trim()
    }
}

fn element_from(start: &BytesStart<'_>) -> Result<Element, WireError> {
    let name = start.name().as_ref().to_owned();
    let mut attrs = Vec::new();
    for attr in start.attributes() {
        if attrs.len() == MAX_ATTRIBUTES {
            return Err(malformed(format!(
                "more than {MAX_ATTRIBUTES} attributes in <{name}>"
            )));
        }
        let attr = attr.map_err(|e| malformed(format!("bad attribute in <{name}>: {e}")))?;
        let key = attr.key.as_ref().to_owned();
        let value = attr
            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .map_err(|e| malformed(format!("bad attribute value in <{name}>: {e}")))?
            .into_owned();
        attrs.push((key, value));
    }
    Ok(Element {
        name,
        attrs,
        children: Vec::new(),
        text: String::new(),
    })
}

/// Parses a whole XML document into its root element. Fails on anything not
/// well-formed: bad syntax, mismatched or unclosed tags (truncation), unknown
/// entities, text or a second element outside the root, an empty document.
/// Leading whitespace (and a byte-order mark) before the XML declaration is
/// tolerated. Nesting deeper than [`MAX_DEPTH`] is refused: the tree is
/// dropped recursively, so a hostile reply must not be able to build an
/// arbitrarily deep one. Documents over [`MAX_DOCUMENT_BYTES`] or with more than
/// [`MAX_NODES`] elements and attributes are refused before they grow the tree.
pub fn parse_document(doc: &str) -> Result<Element, WireError> {
    if doc.len() > MAX_DOCUMENT_BYTES {
        return Err(malformed(format!(
            "document of {} bytes is larger than the {MAX_DOCUMENT_BYTES} bytes accepted",
            doc.len()
        )));
    }
    let mut nodes = 0usize;
    let mut count = |el: &Element| -> Result<(), WireError> {
        nodes += 1 + el.attrs.len();
        if nodes > MAX_NODES {
            Err(malformed(format!(
                "more than {MAX_NODES} elements and attributes"
            )))
        } else {
            Ok(())
        }
    };
    let mut reader = Reader::from_str(doc.trim_start_matches('\u{feff}').trim_start());
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;

    fn attach(
        stack: &mut [Element],
        root: &mut Option<Element>,
        el: Element,
    ) -> Result<(), WireError> {
        if let Some(parent) = stack.last_mut() {
            parent.children.push(el);
            Ok(())
        } else if root.is_some() {
            Err(malformed("more than one root element"))
        } else {
            *root = Some(el);
            Ok(())
        }
    }

    loop {
        let event = reader.read_event().map_err(|e| {
            malformed(format!(
                "not well-formed XML near byte {}: {e}",
                reader.error_position()
            ))
        })?;
        match event {
            Event::Start(e) => {
                if root.is_some() && stack.is_empty() {
                    return Err(malformed("more than one root element"));
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(malformed(format!(
                        "elements nested deeper than {MAX_DEPTH}"
                    )));
                }
                let el = element_from(&e)?;
                count(&el)?;
                stack.push(el);
            }
            Event::Empty(e) => {
                let el = element_from(&e)?;
                count(&el)?;
                attach(&mut stack, &mut root, el)?;
            }
            Event::End(_) => {
                let el = stack
                    .pop()
                    .ok_or_else(|| malformed("closing tag without an opening tag"))?;
                attach(&mut stack, &mut root, el)?;
            }
            Event::Text(t) => {
                let content = t.xml10_content();
                match stack.last_mut() {
                    Some(top) => top.text.push_str(&content),
                    None if content.trim().is_empty() => {}
                    None => return Err(malformed("text outside the root element")),
                }
            }
            Event::CData(c) => match stack.last_mut() {
                Some(top) => top.text.push_str(&c.xml10_content()),
                None => return Err(malformed("CDATA outside the root element")),
            },
            Event::GeneralRef(r) => {
                let resolved: String = if r.is_char_ref() {
                    match r.resolve_char_ref() {
                        Ok(Some(c)) => c.to_string(),
                        _ => return Err(malformed("invalid character reference")),
                    }
                } else {
                    let name = r.xml10_content();
                    match quick_xml::escape::resolve_predefined_entity(&name) {
                        Some(v) => v.to_owned(),
                        None => return Err(malformed(format!("unknown entity &{name};"))),
                    }
                };
                match stack.last_mut() {
                    Some(top) => top.text.push_str(&resolved),
                    None => return Err(malformed("entity outside the root element")),
                }
            }
            Event::Eof => {
                if let Some(open) = stack.last() {
                    return Err(malformed(format!(
                        "truncated document: <{}> is not closed",
                        open.name
                    )));
                }
                return root.ok_or_else(|| malformed("empty document"));
            }
            // Declaration, processing instructions, comments, DOCTYPE.
            _ => {}
        }
    }
}
