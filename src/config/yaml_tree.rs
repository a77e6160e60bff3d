//! A light outline of the YAML document (node kinds, positions, parents; aliases not expanded),
//! built without recursion from the parser's events: it turns an error's position into a field
//! path (`targets[0].port`) and into the text region to blank out so parsing can go on past it.

use serde_saphyr::granit_parser::{Event, Parser};

use super::yaml::{Limit, MAX_DEPTH, MAX_NODES};

#[derive(Debug)]
pub(super) enum Kind {
    Scalar(String),
    Seq,
    Map,
    Alias,
}

#[derive(Debug)]
pub(super) struct Node {
    pub(super) kind: Kind,
    /// Character offsets: `start..end`; a block collection ends where the next token starts.
    pub(super) start: usize,
    pub(super) end: usize,
    pub(super) parent: Option<usize>,
    /// For a mapping: key, value, key, value...
    pub(super) children: Vec<usize>,
}

/// Why no outline could be built.
pub(super) enum TreeError {
    /// The text is not YAML: 1-based line and column, and the parser's message.
    Syntax {
        line: u64,
        column: u64,
        message: String,
    },
    /// The document is over one of the loader's limits.
    Limit(Limit),
}

pub(super) struct Tree {
    pub(super) nodes: Vec<Node>,
}

impl Tree {
    /// The outline of the first document in `text`.
    pub(super) fn build(text: &str) -> Result<Tree, TreeError> {
        let mut nodes: Vec<Node> = Vec::new();
        let mut open: Vec<usize> = Vec::new();
        let mut parser = Parser::new_from_str(text);
        while let Some(ev) = parser.next_event() {
            let (ev, span) = ev.map_err(|e| TreeError::Syntax {
                line: e.marker().line() as u64,
                column: e.marker().col() as u64 + 1,
                message: e.info(),
            })?;
            let (start, end) = (span.start.index(), span.end.index());
            let kind = match ev {
                Event::Scalar(v, ..) => Kind::Scalar(v.into_owned()),
                Event::Alias(_) | Event::UnresolvedAlias(_) => Kind::Alias,
                Event::SequenceStart(..) => Kind::Seq,
                Event::MappingStart(..) => Kind::Map,
                Event::SequenceEnd | Event::MappingEnd => {
                    if let Some(n) = open.pop() {
                        // Flow ends cover the bracket; block ends sit at the next token.
                        nodes[n].end = end.max(nodes[n].start);
                    }
                    continue;
                }
                // Only the first document is the config.
                Event::DocumentEnd => break,
                _ => continue,
            };
            if nodes.len() >= MAX_NODES {
                return Err(TreeError::Limit(Limit::Nodes));
            }
            let id = nodes.len();
            let is_collection = matches!(kind, Kind::Seq | Kind::Map);
            let parent = open.last().copied();
            nodes.push(Node {
                kind,
                start,
                end,
                parent,
                children: Vec::new(),
            });
            if let Some(p) = parent {
                nodes[p].children.push(id);
            }
            if is_collection {
                if open.len() >= MAX_DEPTH {
                    return Err(TreeError::Limit(Limit::Depth));
                }
                open.push(id);
            }
        }
        Ok(Tree { nodes })
    }

    /// The deepest node whose text contains character offset `at`.
    pub(super) fn node_at(&self, at: usize) -> Option<usize> {
        let mut best: Option<usize> = None;
        for (i, n) in self.nodes.iter().enumerate() {
            let inside = (n.start <= at && at < n.end) || n.start == at;
            let narrower = best.is_none_or(|b| self.depth(i) > self.depth(b));
            if inside && narrower {
                best = Some(i);
            }
        }
        best
    }

    /// The nearest mapping at or above `id`.
    pub(super) fn mapping_at_or_above(&self, id: usize) -> Option<usize> {
        let mut cur = Some(id);
        while let Some(c) = cur {
            if matches!(self.nodes[c].kind, Kind::Map) {
                return Some(c);
            }
            cur = self.nodes[c].parent;
        }
        None
    }

    fn depth(&self, mut id: usize) -> usize {
        let mut d = 0;
        while let Some(p) = self.nodes[id].parent {
            d += 1;
            id = p;
        }
        d
    }

    /// The position of `id` in its parent's children.
    fn index_in_parent(&self, id: usize) -> Option<(usize, usize)> {
        let p = self.nodes[id].parent?;
        let i = self.nodes[p].children.iter().position(|c| *c == id)?;
        Some((p, i))
    }

    /// The field path of a node: `targets[0].http.expect_status[1]`; a mapping key names the
    /// field it holds.
    pub(super) fn path(&self, id: usize) -> String {
        let mut parts = Vec::new();
        let mut cur = id;
        while let Some((p, i)) = self.index_in_parent(cur) {
            match self.nodes[p].kind {
                Kind::Seq => parts.push(format!("[{i}]")),
                _ => {
                    let key = self.nodes[p].children[i - i % 2];
                    let name = match &self.nodes[key].kind {
                        Kind::Scalar(s) => s.clone(),
                        _ => "?".to_string(),
                    };
                    parts.push(format!(".{name}"));
                }
            }
            cur = p;
        }
        parts.reverse();
        let s = parts.concat();
        s.strip_prefix('.').map(str::to_string).unwrap_or(s)
    }

    /// The scalar text of a node, when it is one.
    pub(super) fn scalar(&self, id: usize) -> Option<&str> {
        match &self.nodes[id].kind {
            Kind::Scalar(s) => Some(s),
            _ => None,
        }
    }

    /// What to blank out so the document parses past a problem at `id`: the innermost
    /// `key: value` pair holding it (with a flow mapping's comma), or for an item of the
    /// top-level `targets` list the item itself (replaced by `~`, so later items keep their
    /// index). `None` when neither exists.
    pub(super) fn neutralize(&self, id: usize) -> Option<Edit> {
        let mut cur = id;
        loop {
            let (p, i) = self.index_in_parent(cur)?;
            match self.nodes[p].kind {
                Kind::Map => {
                    let pairs = &self.nodes[p].children;
                    let (k, v) = (pairs[i - i % 2], *pairs.get(i - i % 2 + 1)?);
                    let flow = self.is_flow(p);
                    let (start, end) = if !flow {
                        (self.nodes[k].start, self.nodes[v].end)
                    } else if let Some(next) = pairs.get(i - i % 2 + 2) {
                        (self.nodes[k].start, self.nodes[*next].start)
                    } else if i >= 2 {
                        (self.nodes[pairs[i - i % 2 - 1]].end, self.nodes[v].end)
                    } else {
                        (self.nodes[k].start, self.nodes[v].end)
                    };
                    return Some(Edit {
                        start,
                        end,
                        null: false,
                    });
                }
                Kind::Seq if self.path(p) == "targets" => {
                    let n = &self.nodes[cur];
                    return Some(Edit {
                        start: n.start,
                        end: n.end.max(n.start + 1),
                        null: true,
                    });
                }
                _ => cur = p,
            }
        }
    }

    /// A flow collection starts with its bracket; block ones start at their first entry.
    fn is_flow(&self, id: usize) -> bool {
        let n = &self.nodes[id];
        n.children
            .first()
            .is_none_or(|c| self.nodes[*c].start > n.start)
    }
}

/// Characters `start..end` to blank (newlines kept, so every later line and column stays put),
/// with a `~` (null) first when `null`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Edit {
    pub(super) start: usize,
    pub(super) end: usize,
    pub(super) null: bool,
}

impl Edit {
    pub(super) fn apply(&self, text: &mut [char]) {
        let end = self.end.min(text.len());
        for c in text.iter_mut().take(end).skip(self.start) {
            if *c != '\n' && *c != '\r' {
                *c = ' ';
            }
        }
        if self.null && self.start < end {
            text[self.start] = '~';
        }
    }
}
