//! Exploration of configurations by an upper-confidence-bound (UCB) tree search, as the NeuralGraph
//! study explores its simulation and training settings (neural-gnn `GNN_LLM*.py`, `ucb_scores.txt`).
//!
//! Each node is a configuration — its parent's `--set` overrides plus one mutation — with the score
//! its run reached (connectivity R² in the study). A node's visits `n` count it and its descendants;
//! its bound is
//!
//! ```text
//! UCB = score + c · sqrt(ln N_parent / n)
//! ```
//!
//! with `N_parent` the visits of its parent (the total number of nodes for the root's children).
//! The next parent is the scored node of highest UCB; the child changes one key of the mutation
//! space to a different value. After every node the tree is written to `ucb_scores.txt` in the
//! published format, highest bound first:
//!
//! ```text
//! === UCB Scores (N=3, c=1.414) ===
//!
//! Node 2: UCB=2.175, parent=1, visits=1, R2=0.997
//! Node 1: UCB=2.110, parent=root, visits=2, R2=0.934
//! ```

use dynlab_runtime::{write_atomic, Error, Result};
use std::fmt::Write as _;
use std::path::Path;

/// One configuration of the tree.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// 1-based id, in order of creation.
    pub id: usize,
    /// The parent's id (`None`: a child of the root, i.e. the base configuration's mutation).
    pub parent: Option<usize>,
    /// `key=value` overrides of the base configuration, the parent's first.
    pub overrides: Vec<String>,
    /// The score its run reached.
    pub score: f64,
    /// It and its descendants.
    pub visits: u64,
}

/// A key and the values a mutation may give it.
#[derive(Clone, Debug, PartialEq)]
pub struct Mutation {
    /// Config key (`training.lr_w`).
    pub key: String,
    /// Values as TOML literals (`0.01`, `"gaussian"`).
    pub values: Vec<String>,
}

impl Mutation {
    /// Parses `key=v1,v2,...`.
    pub fn parse(text: &str) -> Result<Mutation> {
        let bad = || {
            Error::value(
                "Mutation::parse",
                format!("`{text}`"),
                "key=value1,value2,... with at least two values",
            )
        };
        let (key, values) = text.split_once('=').ok_or_else(bad)?;
        let values: Vec<String> = values.split(',').map(|v| v.trim().to_string()).collect();
        if key.trim().is_empty() || values.len() < 2 || values.iter().any(String::is_empty) {
            return Err(bad());
        }
        Ok(Mutation {
            key: key.trim().to_string(),
            values,
        })
    }
}

/// The search tree (see the module docs).
#[derive(Clone, Debug, Default)]
pub struct UcbTree {
    /// Every scored node, by id − 1.
    pub nodes: Vec<Node>,
    /// The exploration constant `c`.
    pub c: f64,
}

impl UcbTree {
    /// An empty tree with exploration constant `c`.
    pub fn new(c: f64) -> UcbTree {
        UcbTree {
            nodes: Vec::new(),
            c,
        }
    }

    /// The bound of node `id`.
    pub fn ucb(&self, id: usize) -> f64 {
        let node = &self.nodes[id - 1];
        let parent_visits = match node.parent {
            Some(p) => self.nodes[p - 1].visits,
            None => self.nodes.len() as u64,
        };
        node.score + self.c * ((parent_visits as f64).ln().max(0.0) / node.visits as f64).sqrt()
    }

    /// The scored node of highest bound (the lowest id on ties); `None` for an empty tree.
    pub fn select(&self) -> Option<usize> {
        (1..=self.nodes.len()).fold(None, |best: Option<usize>, id| match best {
            Some(b) if self.ucb(b) >= self.ucb(id) => Some(b),
            _ => Some(id),
        })
    }

    /// Adds a scored child of `parent` with `overrides`, counting a visit on it and every
    /// ancestor; returns its id.
    pub fn add(&mut self, parent: Option<usize>, overrides: Vec<String>, score: f64) -> usize {
        let id = self.nodes.len() + 1;
        self.nodes.push(Node {
            id,
            parent,
            overrides,
            score,
            visits: 1,
        });
        let mut up = parent;
        while let Some(p) = up {
            self.nodes[p - 1].visits += 1;
            up = self.nodes[p - 1].parent;
        }
        id
    }

    /// The published `ucb_scores.txt` text.
    pub fn report(&self) -> String {
        let mut ids: Vec<usize> = (1..=self.nodes.len()).collect();
        ids.sort_by(|&a, &b| self.ucb(b).total_cmp(&self.ucb(a)).then(a.cmp(&b)));
        let mut text = format!(
            "=== UCB Scores (N={}, c={}) ===\n\n",
            self.nodes.len(),
            self.c
        );
        for id in ids {
            let n = &self.nodes[id - 1];
            let parent = n.parent.map_or("root".to_string(), |p| p.to_string());
            let _ = writeln!(
                text,
                "Node {id}: UCB={:.3}, parent={parent}, visits={}, R2={:.3}",
                self.ucb(id),
                n.visits,
                n.score
            );
        }
        text
    }

    /// Writes [`UcbTree::report`] to `path` atomically.
    pub fn write(&self, path: &Path) -> Result<()> {
        write_atomic(path, self.report().as_bytes())
    }
}

/// The child of a node with `overrides`: one key of `space` drawn by `draw(count)` (uniform on
/// `0..count`) set to a value other than its current one.
pub fn mutate(
    overrides: &[String],
    space: &[Mutation],
    mut draw: impl FnMut(usize) -> usize,
) -> Vec<String> {
    let m = &space[draw(space.len())];
    let current = overrides
        .iter()
        .rev()
        .find_map(|o| o.strip_prefix(&format!("{}=", m.key)));
    let choices: Vec<&String> = m
        .values
        .iter()
        .filter(|v| Some(v.as_str()) != current)
        .collect();
    let value = choices[draw(choices.len())];
    let mut child: Vec<String> = overrides
        .iter()
        .filter(|o| !o.starts_with(&format!("{}=", m.key)))
        .cloned()
        .collect();
    child.push(format!("{}={value}", m.key));
    child
}

/// Runs `nodes` configurations: the first a mutation of the base, each next one a mutation of the
/// node of highest UCB; `run(id, overrides)` trains node `id` and returns its score. The tree is
/// written to `dir/ucb_scores.txt` after every node.
pub fn explore(
    nodes: usize,
    c: f64,
    space: &[Mutation],
    dir: &Path,
    mut draw: impl FnMut(usize) -> usize,
    mut run: impl FnMut(usize, &[String]) -> Result<f64>,
) -> Result<UcbTree> {
    if space.is_empty() {
        return Err(Error::value(
            "explore",
            "an empty mutation space",
            "at least one key with two values",
        ));
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io("explore", dir, e))?;
    let mut tree = UcbTree::new(c);
    for _ in 0..nodes {
        let parent = tree.select();
        let base = parent.map_or(Vec::new(), |p| tree.nodes[p - 1].overrides.clone());
        let overrides = mutate(&base, space, &mut draw);
        let score = run(tree.nodes.len() + 1, &overrides)?;
        tree.add(
            parent,
            overrides,
            if score.is_finite() { score } else { 0.0 },
        );
        tree.write(&dir.join("ucb_scores.txt"))?;
    }
    Ok(tree)
}
