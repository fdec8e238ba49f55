//! Plain-text tables for people (plan, build and run summaries): columns
//! padded to their widest cell, two spaces apart, no trailing blanks.

/// Render `headers` and `rows` (each row as many cells as headers).
pub fn render<R: AsRef<[String]>>(headers: &[&str], rows: &[R]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r.as_ref()) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let l: Vec<String> = cells
            .zip(&widths)
            .map(|(c, &w)| format!("{c:<w$}"))
            .collect();
        out.push_str(l.join("  ").trim_end());
        out.push('\n');
    };
    line(&mut headers.iter().copied());
    for r in rows {
        line(&mut r.as_ref().iter().map(String::as_str));
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn pads_to_widest_cell() {
        let t = super::render(&["A", "BB"], &[vec!["xxx".to_string(), "y".to_string()]]);
        assert_eq!(t, "A    BB\nxxx  y\n");
    }
}
