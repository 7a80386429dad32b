//! The route table, read from the deployment template (`infra/template.yaml`, built in), so that
//! the local API serves exactly the deployed API's routes, with the same authorization and the same
//! function behind each: a route added to the template is served locally with no change here.
//!
//! From each `AWS::ApiGatewayV2::Route`: `RouteKey` (`GET /grants/{id}`, `ANY /{proxy+}`,
//! `$default`), `AuthorizationType` (`JWT`, `AWS_IAM`, `NONE` or absent) and `AuthorizationScopes`,
//! `Target` (`!Sub integrations/${SomeIntegration}`) -> the integration's `IntegrationUri`
//! (`!GetAtt SomeFunction.Arn`, payload format 2.0, `TimeoutInMillis`) -> the function's binary
//! (`Metadata.BuildProperties.Binary`, the name `cargo lambda watch` serves it by). `!If`, and
//! resource `Condition`s, are decided by the local conditions (`UseJwt` true by default: locally
//! the API always runs in JWT mode). Anything else the local API does not know fails at start.
//!
//! Matching follows API Gateway's HTTP API priorities: a full match of path and method first (literal
//! segments before `{variables}`, a method before `ANY`), then the greedy `{name+}` routes (the
//! longest first), then `$default`.

use anyhow::{anyhow, bail, Context};
use axum::http::Method;
use serde_json::{json, Map, Value};
use std::{collections::BTreeMap, time::Duration};

/// The deployment template, as built into this binary.
pub const TEMPLATE: &str = include_str!("../../../infra/template.yaml");

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// No authorization (`NONE` or none given).
    None,
    /// The JWT authorizer; a token must carry one of `scopes` when there are any.
    Jwt { scopes: Vec<String> },
    /// SigV4 (`AWS_IAM`): not emulated; the local API refuses these routes (403).
    Iam,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Variable(String),
    Greedy(String),
}

#[derive(Debug, Clone)]
pub struct Route {
    /// As in the template: `GET /grants/{id}`, or `$default`.
    pub key: String,
    /// `None`: `ANY`.
    pub method: Option<Method>,
    segments: Vec<Segment>,
    pub function: String,
    pub auth: Auth,
    /// The integration's timeout (API Gateway answers 503 after it).
    pub timeout: Duration,
}

/// A matched request: its route and its path parameters (decoded).
#[derive(Debug, Clone)]
pub struct Matched<'a> {
    pub route: &'a Route,
    pub path_parameters: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
pub struct RouteTable {
    routes: Vec<Route>,
}

impl Route {
    fn parse_key(key: &str) -> anyhow::Result<(Option<Method>, Vec<Segment>)> {
        if key == "$default" {
            return Ok((None, vec![]));
        }
        let (method, path) =
            key.split_once(' ').with_context(|| format!("route key {key:?}: expected METHOD /path"))?;
        let method = match method {
            "ANY" => None,
            m => Some(Method::from_bytes(m.as_bytes()).with_context(|| format!("route key {key:?}: method"))?),
        };
        let path = path.strip_prefix('/').with_context(|| format!("route key {key:?}: the path starts with /"))?;
        let mut segments = Vec::new();
        let parts: Vec<&str> = if path.is_empty() { vec![] } else { path.split('/').collect() };
        for (i, part) in parts.iter().enumerate() {
            let segment = match part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                Some(name) if name.ends_with('+') => {
                    if i + 1 != parts.len() {
                        bail!("route key {key:?}: a greedy variable ends the path");
                    }
                    Segment::Greedy(name.trim_end_matches('+').to_owned())
                }
                Some(name) => Segment::Variable(name.to_owned()),
                None => Segment::Literal((*part).to_owned()),
            };
            segments.push(segment);
        }
        Ok((method, segments))
    }

    fn is_default(&self) -> bool {
        self.key == "$default"
    }

    fn is_greedy(&self) -> bool {
        matches!(self.segments.last(), Some(Segment::Greedy(_)))
    }

    /// The path parameters when `path` (raw, split on `/`) matches this route's path.
    fn path_matches(&self, parts: &[&str]) -> Option<BTreeMap<String, String>> {
        let mut params = BTreeMap::new();
        for (i, segment) in self.segments.iter().enumerate() {
            match segment {
                Segment::Greedy(name) => {
                    let rest = parts.get(i..).filter(|r| !r.is_empty() && !r.iter().all(|p| p.is_empty()))?;
                    params.insert(name.clone(), decode(&rest.join("/")));
                    return Some(params);
                }
                Segment::Literal(literal) => {
                    if parts.get(i).map(|p| decode(p)) != Some(literal.clone()) {
                        return None;
                    }
                }
                Segment::Variable(name) => {
                    let part = parts.get(i).filter(|p| !p.is_empty())?;
                    params.insert(name.clone(), decode(part));
                }
            }
        }
        (parts.len() == self.segments.len()).then_some(params)
    }

    /// Sort key among the matches of one request: lower is preferred.
    fn rank(&self) -> (u8, Vec<u8>, u8, std::cmp::Reverse<usize>) {
        let tier = if self.is_default() {
            2
        } else if self.is_greedy() {
            1
        } else {
            0
        };
        let specificity = self.segments.iter().map(|s| matches!(s, Segment::Literal(_)) as u8 ^ 1).collect();
        (tier, specificity, self.method.is_none() as u8, std::cmp::Reverse(self.segments.len()))
    }
}

/// `%XX` decoding (API Gateway decodes path parameters); invalid escapes stay as they are.
pub(crate) fn decode(text: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(high), Some(low)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push(high << 4 | low);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl RouteTable {
    /// The routes of the built-in template, in JWT mode (`UseJwt` true).
    pub fn deployed() -> anyhow::Result<Self> {
        Self::from_template(TEMPLATE, &BTreeMap::from([("UseJwt".to_owned(), true)]))
    }

    /// The routes of `template` (YAML, short or long form), deciding each `!If` and `Condition`
    /// by `conditions`.
    pub fn from_template(template: &str, conditions: &BTreeMap<String, bool>) -> anyhow::Result<Self> {
        let yaml: serde_yaml_ng::Value = serde_yaml_ng::from_str(template).context("the template is not YAML")?;
        let t = long_form(yaml);
        let resources = t["Resources"].as_object().context("the template has no Resources")?;
        let condition = |name: &str| -> anyhow::Result<bool> {
            conditions.get(name).copied().with_context(|| {
                format!("the template's condition {name} is not decided locally (pass --condition {name}=true|false)")
            })
        };
        let resolve = |value: &Value| -> anyhow::Result<Value> { resolve_if(value, &condition) };

        let mut routes = Vec::new();
        for (id, resource) in resources {
            if resource["Type"] != "AWS::ApiGatewayV2::Route" {
                continue;
            }
            if let Some(name) = resource["Condition"].as_str() {
                if !condition(name)? {
                    continue;
                }
            }
            let p = &resource["Properties"];
            let key = resolve(&p["RouteKey"])?.as_str().with_context(|| format!("{id}: RouteKey"))?.to_owned();
            let (method, segments) = Route::parse_key(&key).with_context(|| id.clone())?;
            let auth = match resolve(&p["AuthorizationType"])? {
                Value::Null => Auth::None,
                Value::String(kind) if kind == "NONE" => Auth::None,
                Value::String(kind) if kind == "AWS_IAM" => Auth::Iam,
                Value::String(kind) if kind == "JWT" => {
                    let scopes = match resolve(&p["AuthorizationScopes"])? {
                        Value::Null => vec![],
                        Value::Array(items) => items.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect(),
                        other => bail!("{id}: AuthorizationScopes {other}"),
                    };
                    Auth::Jwt { scopes }
                }
                other => bail!("{id}: AuthorizationType {other} is not emulated locally"),
            };
            let target = resolve(&p["Target"])?;
            let integration_id = target["Fn::Sub"]
                .as_str()
                .and_then(|s| s.strip_prefix("integrations/${"))
                .and_then(|s| s.strip_suffix('}'))
                .with_context(|| format!("{id}: Target {target}: expected !Sub integrations/${{Integration}}"))?;
            let integration =
                resources.get(integration_id).with_context(|| format!("{id}: no resource {integration_id}"))?;
            let (function, timeout) = function_of(resources, integration_id, integration)?;
            routes.push(Route { key, method, segments, function, auth, timeout });
        }
        if routes.is_empty() {
            bail!("the template has no AWS::ApiGatewayV2::Route");
        }
        routes.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Self { routes })
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The route a request goes to, as API Gateway picks it; `None`: 404.
    pub fn find(&self, method: &Method, raw_path: &str) -> Option<Matched<'_>> {
        let path = raw_path.strip_prefix('/').unwrap_or(raw_path);
        let parts: Vec<&str> = if path.is_empty() { vec![] } else { path.split('/').collect() };
        self.routes
            .iter()
            .filter(|r| r.method.as_ref().is_none_or(|m| m == method))
            .filter_map(|route| {
                let path_parameters = if route.is_default() { BTreeMap::new() } else { route.path_matches(&parts)? };
                Some(Matched { route, path_parameters })
            })
            .min_by_key(|m| m.route.rank())
    }
}

/// The function (its binary name) and the timeout behind an integration.
fn function_of(resources: &Map<String, Value>, id: &str, integration: &Value) -> anyhow::Result<(String, Duration)> {
    let p = &integration["Properties"];
    if integration["Type"] != "AWS::ApiGatewayV2::Integration" || p["IntegrationType"] != "AWS_PROXY" {
        bail!("{id}: only AWS_PROXY Lambda integrations are emulated locally");
    }
    if p["PayloadFormatVersion"] != "2.0" {
        bail!("{id}: only payload format 2.0 is emulated locally");
    }
    let function_id = p["IntegrationUri"]["Fn::GetAtt"][0]
        .as_str()
        .with_context(|| format!("{id}: IntegrationUri: expected !GetAtt SomeFunction.Arn"))?;
    let function = resources.get(function_id).with_context(|| format!("{id}: no resource {function_id}"))?;
    let binary = function["Metadata"]["BuildProperties"]["Binary"]
        .as_str()
        .with_context(|| format!("{function_id}: Metadata.BuildProperties.Binary (the binary's name)"))?;
    let millis = p["TimeoutInMillis"].as_u64().unwrap_or(30_000);
    Ok((binary.to_owned(), Duration::from_millis(millis)))
}

/// `{"Fn::If": [condition, then, else]}` decided, anywhere inside `value`.
fn resolve_if(value: &Value, condition: &dyn Fn(&str) -> anyhow::Result<bool>) -> anyhow::Result<Value> {
    Ok(match value {
        Value::Object(map) if map.len() == 1 && map.contains_key("Fn::If") => {
            let args = map["Fn::If"].as_array().filter(|a| a.len() == 3).ok_or_else(|| anyhow!("malformed Fn::If"))?;
            let name = args[0].as_str().ok_or_else(|| anyhow!("Fn::If: condition name"))?;
            let chosen = if condition(name)? { &args[1] } else { &args[2] };
            match resolve_if(chosen, condition)? {
                Value::Object(m) if m.get("Ref") == Some(&json!("AWS::NoValue")) => Value::Null,
                v => v,
            }
        }
        Value::Object(map) => Value::Object(
            map.iter().map(|(k, v)| Ok((k.clone(), resolve_if(v, condition)?))).collect::<anyhow::Result<_>>()?,
        ),
        Value::Array(items) => {
            Value::Array(items.iter().map(|v| resolve_if(v, condition)).collect::<anyhow::Result<_>>()?)
        }
        other => other.clone(),
    })
}

/// YAML to JSON, CloudFormation's short-form tags in their long form (`!Ref x` is `{"Ref": x}`,
/// `!GetAtt A.B` is `{"Fn::GetAtt": ["A", "B"]}`, `!Sub s` is `{"Fn::Sub": s}`), as
/// `tests/integration/tests/template.rs` reads it.
fn long_form(yaml: serde_yaml_ng::Value) -> Value {
    use serde_yaml_ng::Value as Y;
    match yaml {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => serde_json::to_value(&n).unwrap_or(Value::Null),
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => Value::Array(items.into_iter().map(long_form).collect()),
        Y::Mapping(map) => Value::Object(
            map.into_iter()
                .filter_map(|(k, v)| match k {
                    Y::String(k) => Some((k, long_form(v))),
                    _ => None,
                })
                .collect(),
        ),
        Y::Tagged(tagged) => {
            let tag = tagged.tag.to_string();
            let name = tag.trim_start_matches('!').to_owned();
            let value = match (name.as_str(), long_form(tagged.value)) {
                ("GetAtt", Value::String(s)) => match s.split_once('.') {
                    Some((resource, attribute)) => json!([resource, attribute]),
                    None => Value::String(s),
                },
                (_, value) => value,
            };
            let key = if matches!(name.as_str(), "Ref" | "Condition") { name } else { format!("Fn::{name}") };
            Value::Object(Map::from_iter([(key, value)]))
        }
    }
}
