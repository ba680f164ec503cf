//! Draws a directed acyclic graph as SVG with a layered (Sugiyama-style) layout: columns by
//! longest path from the sources, rows ordered by barycentre sweeps to cut crossings, edges
//! as curves from upstream (left) to downstream (right).

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;

use super::html::esc;

/// One box of the picture.
#[derive(Debug, Clone)]
pub struct Node {
    /// Unique id (also `data-id` on the box).
    pub id: String,
    /// First line (bold).
    pub title: String,
    /// Second line.
    pub subtitle: String,
    /// Status class suffix, e.g. `running` gives `s-running`.
    pub status: String,
    /// Where a click goes.
    pub href: String,
    /// Tooltip text.
    pub tooltip: String,
    /// Extra `data-` attributes: (name, value).
    pub data: Vec<(&'static str, String)>,
    /// Drawn with a thicker border (the subject of the picture).
    pub focus: bool,
}

/// Most nodes drawn; larger graphs are not drawn.
pub const MAX_NODES: usize = 1500;

const W: f64 = 230.0;
const H: f64 = 46.0;
const GAP_X: f64 = 70.0;
const GAP_Y: f64 = 14.0;
const PAD: f64 = 10.0;

/// Column of each node: the longest path from a source. Nodes on a cycle (which a job
/// graph never has) go after every other column.
fn layers(n: usize, edges: &[(usize, usize)]) -> Vec<usize> {
    let mut indeg = vec![0usize; n];
    let mut out: Vec<Vec<usize>> = vec![Vec::new(); n];
    for &(a, b) in edges {
        indeg[b] += 1;
        out[a].push(b);
    }
    let mut layer = vec![0usize; n];
    let mut queue: VecDeque<usize> = (0..n).filter(|&i| indeg[i] == 0).collect();
    let mut done = vec![false; n];
    while let Some(a) = queue.pop_front() {
        done[a] = true;
        for &b in &out[a] {
            layer[b] = layer[b].max(layer[a] + 1);
            indeg[b] -= 1;
            if indeg[b] == 0 {
                queue.push_back(b);
            }
        }
    }
    let max = layer.iter().copied().max().unwrap_or(0);
    for (i, d) in done.iter().enumerate() {
        if !d {
            layer[i] = max + 1;
        }
    }
    layer
}

/// Rows within each column: barycentre sweeps, alternating direction.
fn order(layer: &[usize], edges: &[(usize, usize)]) -> Vec<Vec<usize>> {
    let cols = layer.iter().copied().max().map_or(0, |m| m + 1);
    let mut by_col: Vec<Vec<usize>> = vec![Vec::new(); cols];
    for (i, &l) in layer.iter().enumerate() {
        by_col[l].push(i);
    }
    let mut ins: Vec<Vec<usize>> = vec![Vec::new(); layer.len()];
    let mut outs: Vec<Vec<usize>> = vec![Vec::new(); layer.len()];
    for &(a, b) in edges {
        outs[a].push(b);
        ins[b].push(a);
    }
    let mut pos = vec![0f64; layer.len()];
    let set_pos = |by_col: &Vec<Vec<usize>>, pos: &mut Vec<f64>| {
        for col in by_col {
            for (r, &i) in col.iter().enumerate() {
                pos[i] = r as f64 - (col.len() as f64 - 1.0) / 2.0;
            }
        }
    };
    set_pos(&by_col, &mut pos);
    for sweep in 0..8 {
        let forward = sweep % 2 == 0;
        let cols_in_order: Vec<usize> = if forward {
            (1..cols).collect()
        } else {
            (0..cols.saturating_sub(1)).rev().collect()
        };
        for c in cols_in_order {
            let col = &mut by_col[c];
            let mut keyed: Vec<(f64, usize, usize)> = col
                .iter()
                .enumerate()
                .map(|(r, &i)| {
                    let nbrs = if forward { &ins[i] } else { &outs[i] };
                    let key = if nbrs.is_empty() {
                        pos[i]
                    } else {
                        nbrs.iter().map(|&j| pos[j]).sum::<f64>() / nbrs.len() as f64
                    };
                    (key, r, i)
                })
                .collect();
            keyed.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            *col = keyed.into_iter().map(|(_, _, i)| i).collect();
            let len = col.len() as f64;
            for (r, &i) in col.iter().enumerate() {
                pos[i] = r as f64 - (len - 1.0) / 2.0;
            }
        }
    }
    by_col
}

fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let keep: String = s.chars().take(max - 1).collect();
    format!("{keep}…")
}

/// The SVG of `nodes` and `edges` (upstream id, downstream id); `None` when the graph has
/// more than [`MAX_NODES`] nodes. Edges naming unknown ids are left out.
pub fn svg(nodes: &[Node], edges: &[(String, String)]) -> Option<String> {
    if nodes.len() > MAX_NODES {
        return None;
    }
    let index: HashMap<&str, usize> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.id.as_str(), i))
        .collect();
    let mut e: Vec<(usize, usize)> = edges
        .iter()
        .filter_map(|(a, b)| Some((*index.get(a.as_str())?, *index.get(b.as_str())?)))
        .filter(|(a, b)| a != b)
        .collect();
    e.sort_unstable();
    e.dedup();
    let layer = layers(nodes.len(), &e);
    let cols = order(&layer, &e);
    let tallest = cols.iter().map(Vec::len).max().unwrap_or(0) as f64;
    let height = tallest * (H + GAP_Y) - GAP_Y + 2.0 * PAD;
    let width = cols.len() as f64 * (W + GAP_X) - GAP_X + 2.0 * PAD;
    let mut xy = vec![(0f64, 0f64); nodes.len()];
    for (c, col) in cols.iter().enumerate() {
        let top = PAD + (tallest - col.len() as f64) * (H + GAP_Y) / 2.0;
        for (r, &i) in col.iter().enumerate() {
            xy[i] = (PAD + c as f64 * (W + GAP_X), top + r as f64 * (H + GAP_Y));
        }
    }
    let mut out = String::new();
    let _ = write!(
        out,
        "<svg class=\"dag\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {width:.0} {height:.0}\" \
width=\"{width:.0}\" height=\"{height:.0}\" role=\"img\" aria-label=\"dependency graph\">\
<defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" orient=\"auto\">\
<path d=\"M0,0 L10,5 L0,10 z\" class=\"arrowhead\"/></marker></defs><g class=\"edges\">"
    );
    for &(a, b) in &e {
        let (x1, y1) = (xy[a].0 + W, xy[a].1 + H / 2.0);
        let (x2, y2) = (xy[b].0, xy[b].1 + H / 2.0);
        let mid = (x1 + x2) / 2.0;
        let _ = write!(
            out,
            "<path class=\"edge\" data-from=\"{}\" data-to=\"{}\" d=\"M{x1:.1},{y1:.1} C{mid:.1},{y1:.1} {mid:.1},{y2:.1} {x2:.1},{y2:.1}\" marker-end=\"url(#arrow)\"/>",
            esc(&nodes[a].id),
            esc(&nodes[b].id)
        );
    }
    out.push_str("</g><g class=\"nodes\">");
    for (i, n) in nodes.iter().enumerate() {
        let (x, y) = xy[i];
        let mut data = String::new();
        for (k, v) in &n.data {
            let _ = write!(data, " data-{k}=\"{}\"", esc(v));
        }
        let focus = if n.focus { " focus" } else { "" };
        let _ = write!(
            out,
            "<a href=\"{href}\"><g class=\"node s-{status}{focus}\" data-id=\"{id}\"{data} transform=\"translate({x:.1},{y:.1})\">\
<title>{tip}</title><rect width=\"{W}\" height=\"{H}\" rx=\"6\"/>\
<text x=\"10\" y=\"19\" class=\"t1\">{title}</text><text x=\"10\" y=\"36\" class=\"t2\">{sub}</text></g></a>",
            href = esc(&n.href),
            status = esc(&n.status),
            id = esc(&n.id),
            tip = esc(&n.tooltip),
            title = esc(&clip(&n.title, 30)),
            sub = esc(&clip(&n.subtitle, 34)),
        );
    }
    out.push_str("</g></svg>");
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str) -> Node {
        Node {
            id: id.to_string(),
            title: id.to_string(),
            subtitle: String::new(),
            status: "pending".into(),
            href: "#".into(),
            tooltip: id.to_string(),
            data: vec![],
            focus: false,
        }
    }

    #[test]
    fn columns_follow_the_longest_path_from_a_source() {
        // a -> b -> d, a -> d, c -> d
        let e = [(0, 1), (1, 3), (0, 3), (2, 3)];
        assert_eq!(layers(4, &e), [0, 1, 0, 2]);
    }

    #[test]
    fn barycentre_ordering_uncrosses_two_parallel_chains() {
        // a0 -> b1, a1 -> b0: the second column is reordered to match the first.
        let layer = [0, 0, 1, 1];
        let e = [(0, 3), (1, 2)];
        assert_eq!(order(&layer, &e), vec![vec![0, 1], vec![3, 2]]);
    }

    #[test]
    fn the_svg_escapes_labels_and_draws_each_edge_once() {
        let mut a = node("<a>");
        a.title = "<script>alert(1)</script>".into();
        let b = node("b");
        let edges = [
            ("<a>".to_string(), "b".to_string()),
            ("<a>".to_string(), "b".to_string()),
            ("b".to_string(), "missing".to_string()),
        ];
        let svg = svg(&[a, b], &edges).unwrap();
        assert!(!svg.contains("<script>"));
        assert!(svg.contains("&lt;script&gt;"));
        assert_eq!(svg.matches("class=\"edge\"").count(), 1);
        assert!(svg.starts_with("<svg"));
    }

    #[test]
    fn too_large_graphs_are_not_drawn() {
        let nodes: Vec<Node> = (0..=MAX_NODES).map(|i| node(&i.to_string())).collect();
        assert!(svg(&nodes, &[]).is_none());
    }
}
