//! Column layout as kubectl's tabwriter does it (`minwidth 6, padding 3`).

/// Cells narrower than this are padded to it (kubectl's `tabwriterMinWidth`).
const MIN_WIDTH: usize = 6;
/// Spaces added after the widest cell of a column (`tabwriterPadding`).
const PADDING: usize = 3;

/// Lay `rows` out in left-aligned columns, one line each, ending in `\n`.
///
/// Every column but the last is as wide as its widest cell plus three spaces
/// (at least six characters); the last column is not padded, so no line has
/// trailing spaces. Widths count characters, not bytes.
pub fn layout(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![MIN_WIDTH; columns];
    for row in rows {
        // The last cell of a row ends the line: it does not widen a column.
        for (i, cell) in row.iter().enumerate().take(row.len().saturating_sub(1)) {
            widths[i] = widths[i].max(cell.chars().count() + PADDING);
        }
    }
    let mut out = String::new();
    for row in rows {
        let last = row.len().saturating_sub(1);
        for (i, cell) in row.iter().enumerate() {
            out.push_str(cell);
            if i < last {
                let pad = widths[i].saturating_sub(cell.chars().count());
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(cells: &[&str]) -> Vec<String> {
        cells.iter().map(|c| c.to_string()).collect()
    }

    #[test]
    fn pads_to_widest_cell_plus_three() {
        let text = layout(&[row(&["NAME", "READY", "AGE"]), row(&["web-1", "1/1", "5s"])]);
        assert_eq!(text, "NAME    READY   AGE\nweb-1   1/1     5s\n");
    }

    #[test]
    fn narrow_columns_are_six_wide() {
        let text = layout(&[row(&["A", "B"]), row(&["x", "y"])]);
        assert_eq!(text, "A     B\nx     y\n");
    }

    #[test]
    fn widths_count_characters() {
        let text = layout(&[row(&["NAME", "X"]), row(&["héllo", "y"])]);
        assert_eq!(text, "NAME    X\nhéllo   y\n");
    }

    #[test]
    fn empty_table_is_empty() {
        assert_eq!(layout(&[]), "");
    }
}
