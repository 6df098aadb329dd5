//! The Terraform under deploy/terraform, checked without a `terraform` binary (none can be
//! installed here): every `.tf` file parses as HCL, and in each stack and module
//! - every `var.x`, `local.x` and `module.x` reference is declared, and every variable is used;
//! - every variable and output carries a description, every variable a type;
//! - every call of a local module passes only that module's variables, and all its required ones,
//!   and reads only outputs the module declares;
//! - the stack declares a remote-state backend and a `helm_values_yaml` output from the
//!   helm-values module, whose keys all exist in the chart's values.schema.json.

use hcl::edit::expr::{Expression, ObjectKey, Traversal, TraversalOperator};
use hcl::edit::structure::{Block, BlockLabel, Body};
use hcl::edit::visit::{visit_traversal, Visit};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const STACKS: &[&str] = &["aws", "gcp", "azure"];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn terraform_dir() -> PathBuf {
    repo().join("deploy/terraform")
}

/// One Terraform module directory: its files parsed.
struct Module {
    dir: PathBuf,
    files: Vec<(PathBuf, Body)>,
}

fn parse_module(dir: &Path) -> Module {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "tf"))
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "{} holds no .tf file", dir.display());
    let files = paths
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let body = hcl::edit::parser::parse_body(&text)
                .unwrap_or_else(|e| panic!("{} does not parse: {e}", p.display()));
            (p, body)
        })
        .collect();
    Module {
        dir: dir.to_owned(),
        files,
    }
}

fn label(b: &Block, i: usize) -> String {
    match b.labels.get(i) {
        Some(BlockLabel::Ident(id)) => id.as_str().to_owned(),
        Some(BlockLabel::String(s)) => s.as_str().to_owned(),
        None => panic!("block {} has no label {i}", b.ident.as_str()),
    }
}

fn string_attr(body: &Body, key: &str) -> Option<String> {
    body.get_attribute(key)
        .and_then(|a| a.value.as_str().map(str::to_owned))
}

/// References found anywhere in expressions: `var.x`, `local.x`, `module.m.o`.
#[derive(Default)]
struct Refs {
    vars: BTreeSet<String>,
    locals: BTreeSet<String>,
    module_outputs: BTreeSet<(String, String)>,
}

impl Visit for Refs {
    fn visit_traversal(&mut self, node: &Traversal) {
        if let Expression::Variable(root) = &node.expr {
            let names: Vec<String> = node
                .operators
                .iter()
                .map_while(|op| match op.value() {
                    TraversalOperator::GetAttr(id) => Some(id.as_str().to_owned()),
                    _ => None,
                })
                .collect();
            match (root.as_str(), names.as_slice()) {
                ("var", [name, ..]) => {
                    self.vars.insert(name.clone());
                }
                ("local", [name, ..]) => {
                    self.locals.insert(name.clone());
                }
                ("module", [name, output, ..]) => {
                    self.module_outputs.insert((name.clone(), output.clone()));
                }
                _ => {}
            }
        }
        visit_traversal(self, node);
    }
}

/// What a module declares.
#[derive(Default)]
struct Declared {
    variables: BTreeMap<String, bool>,
    locals: BTreeSet<String>,
    outputs: BTreeSet<String>,
    modules: BTreeMap<String, Block>,
    backend: bool,
}

fn declared(m: &Module) -> Declared {
    let mut d = Declared::default();
    for (path, body) in &m.files {
        let at = path.display();
        for block in body.blocks() {
            match block.ident.as_str() {
                "variable" => {
                    let name = label(block, 0);
                    let description = string_attr(&block.body, "description").unwrap_or_default();
                    assert!(
                        !description.trim().is_empty(),
                        "{at}: variable {name} has no description"
                    );
                    assert!(
                        block.body.has_attribute("type"),
                        "{at}: variable {name} has no type"
                    );
                    let required = !block.body.has_attribute("default");
                    assert!(
                        d.variables.insert(name.clone(), required).is_none(),
                        "{at}: variable {name} declared twice"
                    );
                }
                "output" => {
                    let name = label(block, 0);
                    let description = string_attr(&block.body, "description").unwrap_or_default();
                    assert!(
                        !description.trim().is_empty(),
                        "{at}: output {name} has no description"
                    );
                    d.outputs.insert(name);
                }
                "locals" => {
                    for attr in block.body.attributes() {
                        d.locals.insert(attr.key.as_str().to_owned());
                    }
                }
                "module" => {
                    d.modules.insert(label(block, 0), block.clone());
                }
                "terraform" => {
                    d.backend |= block.body.get_blocks("backend").next().is_some();
                }
                _ => {}
            }
        }
    }
    d
}

fn references(m: &Module) -> Refs {
    let mut refs = Refs::default();
    for (_, body) in &m.files {
        refs.visit_body(body);
    }
    refs
}

/// Everything wrong with one module directory (and the local modules it calls).
fn problems(m: &Module) -> Vec<String> {
    let name = m.dir.display().to_string();
    let d = declared(m);
    let refs = references(m);
    let mut out = Vec::new();
    for v in &refs.vars {
        if !d.variables.contains_key(v) {
            out.push(format!("{name}: var.{v} is not declared"));
        }
    }
    for v in d.variables.keys() {
        if !refs.vars.contains(v) {
            out.push(format!("{name}: variable {v} is declared but never used"));
        }
    }
    for l in &refs.locals {
        if !d.locals.contains(l) {
            out.push(format!("{name}: local.{l} is not defined"));
        }
    }
    for (module, output) in &refs.module_outputs {
        let Some(call) = d.modules.get(module) else {
            out.push(format!("{name}: module.{module} is not declared"));
            continue;
        };
        let source = string_attr(&call.body, "source").unwrap_or_default();
        if source.starts_with("../") {
            let callee = parse_module(&m.dir.join(&source));
            if !declared(&callee).outputs.contains(output) {
                out.push(format!(
                    "{name}: module.{module}.{output} is not an output of {source}"
                ));
            }
        }
    }
    for (module, call) in &d.modules {
        let source = string_attr(&call.body, "source").unwrap_or_default();
        if !source.starts_with("../") {
            continue;
        }
        let callee = declared(&parse_module(&m.dir.join(&source)));
        let meta = [
            "source",
            "version",
            "providers",
            "depends_on",
            "count",
            "for_each",
        ];
        let passed: BTreeSet<String> = call
            .body
            .attributes()
            .map(|a| a.key.as_str().to_owned())
            .filter(|k| !meta.contains(&k.as_str()))
            .collect();
        for arg in &passed {
            if !callee.variables.contains_key(arg) {
                out.push(format!(
                    "{name}: module {module} passes {arg}, which {source} does not declare"
                ));
            }
        }
        for (var, required) in &callee.variables {
            if *required && !passed.contains(var) {
                out.push(format!(
                    "{name}: module {module} does not pass required variable {var}"
                ));
            }
        }
    }
    out
}

/// Key paths of an object expression (`a.b.c` for nested objects).
fn object_paths(expr: &Expression, prefix: &str, out: &mut Vec<String>) {
    let Expression::Object(obj) = expr else {
        return;
    };
    for (key, value) in obj.iter() {
        let k = match key {
            ObjectKey::Ident(id) => id.as_str().to_owned(),
            ObjectKey::Expression(Expression::String(s)) => s.as_str().to_owned(),
            ObjectKey::Expression(other) => panic!("computed object key {other:?} under {prefix}"),
        };
        let path = if prefix.is_empty() {
            k
        } else {
            format!("{prefix}.{k}")
        };
        out.push(path.clone());
        object_paths(value.expr(), &path, out);
    }
}

/// Whether the chart's schema accepts a value at `path` (free-form maps accept any key below).
fn schema_accepts(schema: &serde_json::Value, path: &str) -> bool {
    let mut node = schema;
    for seg in path.split('.') {
        match node.get("properties") {
            Some(props) => match props.get(seg) {
                Some(next) => node = next,
                None => return false,
            },
            None => return node.get("type") == Some(&serde_json::json!("object")),
        }
    }
    true
}

fn helm_values_paths() -> Vec<String> {
    let m = parse_module(&terraform_dir().join("modules/helm-values"));
    let mut paths = Vec::new();
    for (_, body) in &m.files {
        for block in body.get_blocks("locals") {
            if let Some(values) = block.body.get_attribute("values") {
                object_paths(&values.value, "", &mut paths);
            }
        }
    }
    paths
}

#[test]
fn every_tf_file_parses_and_each_stack_is_consistent() {
    let root = terraform_dir();
    let mut dirs: Vec<PathBuf> = STACKS.iter().map(|s| root.join(s)).collect();
    for entry in std::fs::read_dir(root.join("modules")).unwrap() {
        dirs.push(entry.unwrap().path());
    }
    let mut all = Vec::new();
    let mut files = 0;
    for dir in &dirs {
        let m = parse_module(dir);
        files += m.files.len();
        all.extend(problems(&m));
    }
    assert!(all.is_empty(), "Terraform problems:\n{}", all.join("\n"));
    // Every .tf file under deploy/terraform lives in one of the checked directories.
    let mut stack = vec![root.clone()];
    let mut on_disk = 0;
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "tf") {
                on_disk += 1;
            }
        }
    }
    assert_eq!(files, on_disk, "a .tf file outside the checked directories");
}

#[test]
fn each_stack_has_remote_state_and_feeds_the_helm_values() {
    for stack in STACKS {
        let m = parse_module(&terraform_dir().join(stack));
        let d = declared(&m);
        assert!(d.backend, "{stack}: no backend block (remote state)");
        let call = d
            .modules
            .get("helm_values")
            .unwrap_or_else(|| panic!("{stack}: no helm_values module"));
        assert_eq!(
            string_attr(&call.body, "source").as_deref(),
            Some("../modules/helm-values")
        );
        assert!(d.outputs.contains("helm_values_yaml"), "{stack}");
        let refs = references(&m);
        assert!(
            refs.module_outputs
                .contains(&("helm_values".to_owned(), "values_yaml".to_owned())),
            "{stack}: helm_values_yaml does not come from module.helm_values.values_yaml"
        );
    }
}

#[test]
fn helm_values_from_terraform_are_keys_the_chart_accepts() {
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("deploy/helm/medai/values.schema.json")).unwrap(),
    )
    .unwrap();
    let paths = helm_values_paths();
    assert!(paths.len() > 10, "{paths:?}");
    let rejected: Vec<&String> = paths
        .iter()
        .filter(|p| !schema_accepts(&schema, p))
        .collect();
    assert!(
        rejected.is_empty(),
        "not in values.schema.json: {rejected:?}"
    );
    // The check itself tells a wrong key from a right one.
    assert!(schema_accepts(&schema, "ingress.annotations.any/key"));
    assert!(!schema_accepts(&schema, "ingress.hostname"));
}

#[test]
fn the_checker_catches_what_it_claims_to() {
    let tmp = tempfile::tempdir().unwrap();
    let module = tmp.path().join("mod");
    let stack = tmp.path().join("stack");
    std::fs::create_dir_all(&module).unwrap();
    std::fs::create_dir_all(&stack).unwrap();
    std::fs::write(
        module.join("main.tf"),
        "variable \"needed\" {\n  description = \"d\"\n  type = string\n}\noutput \"o\" {\n  description = \"d\"\n  value = var.needed\n}\n",
    )
    .unwrap();
    std::fs::write(
        stack.join("main.tf"),
        "variable \"unused\" {\n  description = \"d\"\n  type = string\n}\nlocals {\n  a = \"${var.missing}\"\n}\nmodule \"m\" {\n  source = \"../mod\"\n  extra = local.b\n}\noutput \"x\" {\n  description = \"d\"\n  value = module.m.nope\n}\n",
    )
    .unwrap();
    let found = problems(&parse_module(&stack)).join("\n");
    for want in [
        "var.missing is not declared",
        "variable unused is declared but never used",
        "local.b is not defined",
        "module.m.nope is not an output",
        "passes extra",
        "does not pass required variable needed",
    ] {
        assert!(found.contains(want), "missing {want:?} in:\n{found}");
    }
    std::fs::write(stack.join("bad.tf"), "resource \"x\" {\n  a = \n}\n").unwrap();
    let Err(err) = std::panic::catch_unwind(|| parse_module(&stack)) else {
        panic!("a file that does not parse was accepted");
    };
    let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(msg.contains("does not parse"), "{msg}");
}
