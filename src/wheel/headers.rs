//! The email-header format of `METADATA` and `WHEEL`: `Name: value` lines, continuation lines
//! starting with whitespace, repeated fields allowed, an optional body after a blank line.
//!
//! Parsing keeps every field's raw text, so writing back after an edit changes only the edited
//! lines.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    /// The value with continuation lines joined by `\n` (leading whitespace of each kept).
    pub value: String,
    /// The field exactly as it appeared, line terminators included.
    raw: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct HeaderError {
    pub line: usize,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HeaderFile {
    fields: Vec<Field>,
    /// Everything from the blank separator line on (empty if there is no body).
    body: String,
    newline: &'static str,
}

impl HeaderFile {
    pub fn parse(text: &str) -> Result<HeaderFile, HeaderError> {
        let newline = if text.contains("\r\n") { "\r\n" } else { "\n" };
        let mut fields: Vec<Field> = Vec::new();
        let mut body = String::new();
        let mut rest = text;
        let mut line_no = 0;
        while !rest.is_empty() {
            let (line, next) = match rest.find('\n') {
                Some(i) => rest.split_at(i + 1),
                None => (rest, ""),
            };
            line_no += 1;
            let content = line.trim_end_matches(['\n', '\r']);
            if content.is_empty() {
                body = rest.to_string();
                break;
            }
            if content.starts_with([' ', '\t']) {
                let Some(last) = fields.last_mut() else {
                    return Err(HeaderError {
                        line: line_no,
                        reason: "continuation line before any field".into(),
                    });
                };
                last.value.push('\n');
                last.value.push_str(content);
                last.raw.push_str(line);
            } else {
                let Some((name, value)) = content.split_once(':') else {
                    return Err(HeaderError {
                        line: line_no,
                        reason: format!("expected `Name: value`, found {content:?}"),
                    });
                };
                if name.is_empty() || name.contains(char::is_whitespace) {
                    return Err(HeaderError {
                        line: line_no,
                        reason: format!("invalid field name {name:?}"),
                    });
                }
                fields.push(Field {
                    name: name.to_string(),
                    value: value.trim_start().to_string(),
                    raw: line.to_string(),
                });
            }
            rest = next;
        }
        Ok(HeaderFile {
            fields,
            body,
            newline,
        })
    }

    pub fn fields(&self) -> &[Field] {
        &self.fields
    }

    /// First value of a field (names compare case-insensitively).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case(name))
            .map(|f| f.value.as_str())
    }

    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.fields
            .iter()
            .filter(move |f| f.name.eq_ignore_ascii_case(name))
            .map(|f| f.value.as_str())
    }

    pub fn body(&self) -> &str {
        &self.body
    }

    fn make(&self, name: &str, value: &str) -> Field {
        let mut raw = format!("{name}: {value}");
        raw.push_str(self.newline);
        Field {
            name: name.to_string(),
            value: value.to_string(),
            raw,
        }
    }

    /// Adds a field after the last field of the same name, or after the last field.
    pub fn add(&mut self, name: &str, value: &str) {
        let pos = self
            .fields
            .iter()
            .rposition(|f| f.name.eq_ignore_ascii_case(name))
            .map_or(self.fields.len(), |p| p + 1);
        let field = self.make(name, value);
        // A file whose last field has no line terminator needs one before we append.
        if pos == self.fields.len()
            && let Some(last) = self.fields.last_mut()
            && !last.raw.ends_with('\n')
        {
            last.raw.push_str(self.newline);
        }
        self.fields.insert(pos, field);
    }

    /// Sets a single-valued field: replaces the first occurrence or adds it.
    pub fn set(&mut self, name: &str, value: &str) {
        let field = self.make(name, value);
        match self
            .fields
            .iter()
            .position(|f| f.name.eq_ignore_ascii_case(name))
        {
            Some(i) => self.fields[i] = field,
            None => self.add(name, value),
        }
    }

    pub fn to_text(&self) -> String {
        let mut out: String = self.fields.iter().map(|f| f.raw.as_str()).collect();
        out.push_str(&self.body);
        out
    }

    /// Builds a file from fields and an optional body (for new wheels).
    pub fn build(fields: &[(&str, String)], body: Option<&str>) -> HeaderFile {
        let mut h = HeaderFile {
            fields: Vec::new(),
            body: String::new(),
            newline: "\n",
        };
        for (n, v) in fields {
            h.fields.push(h.make(n, v));
        }
        if let Some(b) = body {
            h.body = format!("\n{b}");
        }
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const META: &str = "Metadata-Version: 2.1\nName: demo\nVersion: 1.0\nRequires-Dist: numpy\nRequires-Dist: six ; python_version < \"3\"\nDescription-Content-Type: text/markdown\nLicense: line one\n        line two\n\n# Demo\n\nbody text\n";

    #[test]
    fn parses_repeated_and_continued_fields() {
        let h = HeaderFile::parse(META).unwrap();
        assert_eq!(h.get("name"), Some("demo"));
        assert_eq!(h.get_all("Requires-Dist").count(), 2);
        assert_eq!(h.get("License"), Some("line one\n        line two"));
        assert_eq!(h.to_text(), META);
    }

    #[test]
    fn adds_after_last_of_same_name() {
        let mut h = HeaderFile::parse(META).unwrap();
        h.add("Requires-Dist", "demo-cuda12==1.0");
        let text = h.to_text();
        assert!(text.contains(
            "Requires-Dist: six ; python_version < \"3\"\nRequires-Dist: demo-cuda12==1.0\nDescription"
        ));
        assert!(text.ends_with("\n\n# Demo\n\nbody text\n"));
    }

    #[test]
    fn rejects_garbage() {
        assert!(HeaderFile::parse("no colon here\n").is_err());
        assert!(HeaderFile::parse("  leading continuation\n").is_err());
    }
}
