//! Descriptions laid out the way `kubectl explain` prints them.
//!
//! schemars copies a doc comment line for line, so every `///` line break becomes a "\n" in the
//! description. `kubectl explain` wraps descriptions itself, to its own width, and keeps each
//! "\n" as a hard break: a doc comment's line breaks show up in mid-sentence. Kubernetes' own
//! API documentation is written the way kubectl expects, and the generator rewrites ours the
//! same way: one line per paragraph, paragraphs separated by a blank line ("\n\n"), and each
//! item of a bulleted or numbered list on a line of its own (a nested item keeps its indent).

/// `text` with the lines of each paragraph, and of each list item, joined by single spaces.
pub(super) fn reflow(text: &str) -> String {
    let mut paragraphs = Vec::new();
    // The lines of the paragraph being read: its first line, then one per list item.
    let mut lines: Vec<String> = Vec::new();
    for raw in text.lines() {
        let line = raw.trim();
        if line.is_empty() {
            if !lines.is_empty() {
                paragraphs.push(lines.join("\n"));
                lines.clear();
            }
        } else if starts_list_item(line) {
            lines.push(raw.trim_end().to_owned());
        } else if let Some(last) = lines.last_mut() {
            last.push(' ');
            last.push_str(line);
        } else {
            lines.push(line.to_owned());
        }
    }
    if !lines.is_empty() {
        paragraphs.push(lines.join("\n"));
    }
    paragraphs.join("\n\n")
}

/// Whether `line` (trimmed) begins a Markdown list item: `- `, `* `, `+ `, `1. ` or `1) `.
fn starts_list_item(line: &str) -> bool {
    if ["- ", "* ", "+ "].iter().any(|m| line.starts_with(m)) {
        return true;
    }
    let after_digits = line.trim_start_matches(|c: char| c.is_ascii_digit());
    after_digits.len() < line.len()
        && (after_digits.starts_with(". ") || after_digits.starts_with(") "))
}

#[cfg(test)]
mod tests {
    use super::reflow;

    #[test]
    fn joins_the_lines_of_a_paragraph() {
        assert_eq!(
            reflow(
                "Save a checkpoint every this many steps; 0 saves only at epoch ends\nand on preemption."
            ),
            "Save a checkpoint every this many steps; 0 saves only at epoch ends and on preemption."
        );
    }

    #[test]
    fn keeps_paragraphs_apart() {
        assert_eq!(
            reflow("First paragraph,\nstill the first.\n\n\nSecond\n  paragraph.\n"),
            "First paragraph, still the first.\n\nSecond paragraph."
        );
    }

    #[test]
    fn keeps_list_items_on_their_own_lines() {
        let doc = "Phases:\n- `Queued`: waiting for\n  quota.\n- `Running`: training.\n  \
                   * nested, kept\n    indented.\n1. first\n2) second\n\nAfter the list.";
        assert_eq!(
            reflow(doc),
            "Phases:\n- `Queued`: waiting for quota.\n- `Running`: training.\n  * nested, kept \
             indented.\n1. first\n2) second\n\nAfter the list."
        );
    }

    #[test]
    fn leaves_sentences_that_merely_contain_markers_alone() {
        assert_eq!(
            reflow("A value from 1 to 100\n-1 disables it; 2.5 is\n1.5 plus 1."),
            "A value from 1 to 100 -1 disables it; 2.5 is 1.5 plus 1."
        );
        assert_eq!(reflow("one line"), "one line");
        assert_eq!(reflow(""), "");
    }
}
