// Puts a CloudFormation template (SAM's after its transform, or the CDK app's) into a form in which
// two templates that deploy the same stack are equal, whatever their logical ids and the way their
// intrinsic functions are written:
// - each resource gets a canonical name from what it is (its type and, when the template holds
//   several of that type, the properties that tell them apart: a function's name, a route's key, a
//   role's description...), and every reference to it (Ref, Fn::GetAtt, ${...} in Fn::Sub) becomes
//   `${<canonical name>}` or `${<canonical name>.<attribute>}`;
// - Fn::Sub and Fn::Join of strings become one string (`arn:${AWS::Partition}:...`), numbers and
//   booleans strings (CloudFormation reads "512" and 512 alike);
// - policy documents (a JSON string or an object) become sorted lists of statements whose actions,
//   resources and condition values are sorted lists (the Sid is dropped: it is a label);
// - what differs by construction and means nothing for the deployed stack is dropped, each with
//   why (IGNORED_PROPERTIES, DEFAULTS, CDK_ONLY_*); resources' Metadata (SAM's build method, the
//   CDK's construct paths) and DependsOn (creation order, which references already imply) are not
//   read at all.
// Parameters and conditions keep their names: they are the stack's interface, the same in both.

export type Json = null | string | number | boolean | Json[] | { [key: string]: Json };
export type JsonObject = { [key: string]: Json };

export interface Template {
  Parameters?: JsonObject;
  Conditions?: JsonObject;
  Rules?: JsonObject;
  Resources: { [id: string]: JsonObject };
  Outputs?: JsonObject;
}

export interface NormalizedResource {
  Type: string;
  Condition: string | null;
  DeletionPolicy: string;
  UpdateReplacePolicy: string;
  Properties: JsonObject;
}

export interface Normalized {
  parameters: JsonObject;
  conditions: JsonObject;
  rules: JsonObject;
  outputs: JsonObject;
  /** By canonical name. */
  resources: { [name: string]: NormalizedResource };
  /** Logical id -> canonical name (for messages). */
  names: { [logicalId: string]: string };
}

/** Properties that differ by construction, by resource type, with why. */
export const IGNORED_PROPERTIES: { [type: string]: { [property: string]: string } } = {
  'AWS::Lambda::Function': {
    Code: "where the code is uploaded: `sam package`'s bucket, or the CDK bootstrap bucket's asset",
    Tags: 'SAM tags its functions lambda:createdBy=SAM',
  },
};

/** CloudFormation's defaults, which one side writes out and the other leaves out: the same as absent. */
export const DEFAULTS: { [type: string]: { [property: string]: { value: Json; why: string } } } = {
  'AWS::IAM::ManagedPolicy': { Path: { value: '/', why: "the CDK's ManagedPolicy writes the default path" } },
  'AWS::Lambda::EventInvokeConfig': {
    DestinationConfig: { value: {}, why: 'SAM writes an empty DestinationConfig when there is no destination' },
  },
};

/**
 * Properties in which Lambda takes a function's name or its ARN alike (SAM writes Ref, the CDK's
 * event targets Fn::GetAtt Arn): read as the function itself.
 */
const FUNCTION_NAME_OR_ARN: { [type: string]: string } = {
  'AWS::Lambda::Permission': 'FunctionName',
  'AWS::Lambda::EventInvokeConfig': 'FunctionName',
};

/** What the CDK adds to every template it synthesizes (DefaultStackSynthesizer), with why. */
export const CDK_ONLY_PARAMETERS: { [name: string]: string } = {
  BootstrapVersion: "the CDK bootstrap stack's version, read from SSM at deploy time",
};
export const CDK_ONLY_RULES: { [name: string]: string } = {
  CheckBootstrapVersion: 'refuses to deploy into an account bootstrapped by a too-old CDK',
};

/** Resource types that can be told apart only by properties; the others must be one of a kind. */
const IDENTITY: { [type: string]: (p: JsonObject) => Json } = {
  'AWS::Lambda::Function': (p) => p.FunctionName,
  'AWS::Logs::LogGroup': (p) => p.LogGroupName,
  'AWS::IAM::Role': (p) => p.Description,
  'AWS::IAM::ManagedPolicy': (p) => p.Description,
  'AWS::IAM::Policy': (p) => [p.PolicyName, p.Roles],
  'AWS::ApiGatewayV2::Route': (p) => p.RouteKey,
  'AWS::ApiGatewayV2::Integration': (p) => p.IntegrationUri,
  'AWS::Lambda::Permission': (p) => [p.FunctionName, p.Principal, p.SourceArn ?? null],
  'AWS::Lambda::EventInvokeConfig': (p) => p.FunctionName,
  'AWS::Logs::MetricFilter': (p) => [p.LogGroupName, p.FilterPattern],
  'AWS::CloudWatch::Alarm': (p) => [p.Namespace, p.MetricName, p.Dimensions ?? null],
  'AWS::Events::Rule': (p) => p.Description,
  'AWS::Scheduler::Schedule': (p) => p.Description,
  // The schedules' dead-letter queue is the one without a name.
  'AWS::SQS::Queue': (p) => p.QueueName ?? 'unnamed',
};

/** Arrays whose order means nothing, by property name: compared sorted. */
const UNORDERED = new Set([
  'AttributeDefinitions',
  'GlobalSecondaryIndexes',
  'ManagedPolicyArns',
  'Policies',
  'Statement',
  'Action',
  'NotAction',
  'Resource',
  'NotResource',
  'Queues',
  'Topics',
  'Roles',
  'Dimensions',
  'Architectures',
  'AllowedValues',
]);

const UNRESOLVED = '${?';

class Namer {
  readonly names: { [logicalId: string]: string } = {};
  constructor(
    private readonly parameters: Set<string>,
    private readonly resources: Set<string>,
  ) {}

  ref(id: string): string {
    if (id.startsWith('AWS::') || this.parameters.has(id)) return `\${${id}}`;
    if (!this.resources.has(id)) throw new Error(`a reference to ${id}, which the template does not define`);
    return this.names[id] === undefined ? `${UNRESOLVED}${id}}` : `\${${this.names[id]}}`;
  }

  getAtt(id: string, attribute: string): string {
    if (!this.resources.has(id)) throw new Error(`Fn::GetAtt of ${id}, which the template does not define`);
    return this.names[id] === undefined ? `${UNRESOLVED}${id}.${attribute}}` : `\${${this.names[id]}.${attribute}}`;
  }

  sub(text: string, variables: JsonObject = {}): string {
    return text.replace(/\$\{([^}]*)\}/g, (_whole, name: string) => {
      if (name.startsWith('!')) return `\${${name.slice(1)}}`;
      if (name in variables) {
        const value = this.value(variables[name]);
        return typeof value === 'string' ? value : JSON.stringify(value);
      }
      const dot = name.indexOf('.');
      if (dot > 0 && !name.startsWith('AWS::')) return this.getAtt(name.slice(0, dot), name.slice(dot + 1));
      return this.ref(name);
    });
  }

  /** A value with its intrinsic functions in the canonical form. */
  value(v: Json, key?: string): Json {
    if (v === null) return null;
    if (typeof v === 'number' || typeof v === 'boolean') return String(v);
    if (typeof v === 'string') return v;
    if (Array.isArray(v)) {
      const items = v.map((item) => this.value(item));
      return key !== undefined && UNORDERED.has(key) ? sortJson(items) : items;
    }
    const keys = Object.keys(v);
    if (keys.length === 1) {
      const [fn] = keys;
      const arg = v[fn];
      if (fn === 'Ref') return this.ref(arg as string);
      if (fn === 'Fn::GetAtt') {
        const [id, attribute] = typeof arg === 'string' ? splitOnce(arg, '.') : (arg as string[]);
        return this.getAtt(id, attribute);
      }
      if (fn === 'Fn::Sub') {
        return typeof arg === 'string' ? this.sub(arg) : this.sub((arg as Json[])[0] as string, (arg as Json[])[1] as JsonObject);
      }
      if (fn === 'Fn::Join') {
        const [delimiter, parts] = arg as [string, Json];
        const values = Array.isArray(parts) ? parts.map((part) => this.value(part)) : this.value(parts);
        if (Array.isArray(values) && values.every((part) => typeof part === 'string')) return values.join(delimiter);
        return { 'Fn::Join': [delimiter, values] };
      }
    }
    const out: JsonObject = {};
    for (const k of keys) {
      out[k] = isPolicyDocument(k) ? this.policyDocument(v[k]) : this.value(v[k], k);
    }
    return out;
  }

  policyDocument(document: Json): Json {
    let doc = this.value(document);
    if (typeof doc === 'string') doc = JSON.parse(doc) as Json;
    const statements = asList((doc as JsonObject).Statement).map((s) => normalizeStatement(s as JsonObject));
    return { Version: (doc as JsonObject).Version, Statement: sortJson(statements) };
  }
}

function isPolicyDocument(key: string): boolean {
  return key === 'PolicyDocument' || key === 'AssumeRolePolicyDocument' || key === 'KeyPolicy';
}

export function asList(v: Json | undefined): Json[] {
  if (v === undefined || v === null) return [];
  return Array.isArray(v) ? v : [v];
}

function normalizeStatement(s: JsonObject): JsonObject {
  const out: JsonObject = {};
  for (const [k, v] of Object.entries(s)) {
    if (k === 'Sid') continue;
    if (['Action', 'NotAction', 'Resource', 'NotResource'].includes(k)) out[k] = sortJson(asList(v));
    else if (k === 'Principal' && typeof v === 'object' && v !== null && !Array.isArray(v)) {
      out[k] = Object.fromEntries(Object.entries(v).map(([kind, who]) => [kind, sortJson(asList(who))]));
    } else if (k === 'Condition') {
      out[k] = Object.fromEntries(
        Object.entries(v as JsonObject).map(([operator, tests]) => [
          operator,
          Object.fromEntries(Object.entries(tests as JsonObject).map(([name, value]) => [name, sortJson(asList(value))])),
        ]),
      );
    } else out[k] = v;
  }
  return out;
}

function splitOnce(s: string, separator: string): [string, string] {
  const i = s.indexOf(separator);
  return [s.slice(0, i), s.slice(i + 1)];
}

/** JSON with object keys in order: equal values print equal. */
export function canonicalJson(v: Json): string {
  if (v === null || typeof v !== 'object') return JSON.stringify(v);
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  return `{${Object.keys(v)
    .sort()
    .map((k) => `${JSON.stringify(k)}:${canonicalJson(v[k])}`)
    .join(',')}}`;
}

export function sortJson(items: Json[]): Json[] {
  return [...items].sort((a, b) => (canonicalJson(a) < canonicalJson(b) ? -1 : canonicalJson(a) > canonicalJson(b) ? 1 : 0));
}

function containsUnresolved(v: Json): boolean {
  return canonicalJson(v).includes(UNRESOLVED);
}

export function normalize(template: Template, origin: 'sam' | 'cdk'): Normalized {
  const parameters: JsonObject = { ...(template.Parameters ?? {}) };
  const rules: JsonObject = { ...(template.Rules ?? {}) };
  if (origin === 'cdk') {
    for (const name of Object.keys(CDK_ONLY_PARAMETERS)) delete parameters[name];
    for (const name of Object.keys(CDK_ONLY_RULES)) delete rules[name];
  }
  const resources = functionsByName(template.Resources);
  const namer = new Namer(new Set(Object.keys(template.Parameters ?? {})), new Set(Object.keys(resources)));

  // Names: one of a kind by type; the others by their identity, once what it refers to is named.
  const countByType: { [type: string]: number } = {};
  for (const r of Object.values(resources)) countByType[r.Type as string] = (countByType[r.Type as string] ?? 0) + 1;
  const taken = new Map<string, string>();
  const name = (id: string, canonical: string) => {
    if (taken.has(canonical)) {
      throw new Error(`${origin}: ${id} and ${taken.get(canonical)} both read as ${canonical}: tell them apart in IDENTITY`);
    }
    taken.set(canonical, id);
    namer.names[id] = canonical;
  };
  for (const [id, r] of Object.entries(resources)) {
    if (countByType[r.Type as string] === 1) name(id, r.Type as string);
  }
  for (let progress = true; progress; ) {
    progress = false;
    for (const [id, r] of Object.entries(resources)) {
      if (namer.names[id] !== undefined) continue;
      const identity = IDENTITY[r.Type as string];
      if (!identity) throw new Error(`${origin}: ${countByType[r.Type as string]} resources of type ${r.Type}: add it to IDENTITY`);
      const key = namer.value(identity((r.Properties ?? {}) as JsonObject) ?? null);
      if (containsUnresolved(key)) continue;
      name(id, `${r.Type}[${typeof key === 'string' ? key : canonicalJson(key)}]`);
      progress = true;
    }
  }
  const unnamed = Object.keys(resources).filter((id) => namer.names[id] === undefined);
  if (unnamed.length > 0) throw new Error(`${origin}: cannot name ${unnamed.join(', ')} (their identities refer to each other)`);

  const out: Normalized['resources'] = {};
  for (const [id, r] of Object.entries(resources)) {
    const ignored = IGNORED_PROPERTIES[r.Type as string] ?? {};
    const defaults = DEFAULTS[r.Type as string] ?? {};
    const props = Object.fromEntries(
      Object.entries((r.Properties ?? {}) as JsonObject).filter(
        ([k, v]) => !(k in ignored) && !(k in defaults && canonicalJson(v) === canonicalJson(defaults[k].value)),
      ),
    );
    out[namer.names[id]] = {
      Type: r.Type as string,
      Condition: (r.Condition as string | undefined) ?? null,
      DeletionPolicy: (r.DeletionPolicy as string | undefined) ?? 'Delete',
      UpdateReplacePolicy: (r.UpdateReplacePolicy as string | undefined) ?? 'Delete',
      Properties: namer.value(props) as JsonObject,
    };
  }
  return {
    parameters: namer.value(parameters) as JsonObject,
    conditions: namer.value(template.Conditions ?? {}) as JsonObject,
    rules: namer.value(rules) as JsonObject,
    outputs: namer.value(template.Outputs ?? {}) as JsonObject,
    resources: out,
    names: namer.names,
  };
}

function functionsByName(resources: Template['Resources']): Template['Resources'] {
  const out: Template['Resources'] = {};
  for (const [id, r] of Object.entries(resources)) {
    const property = FUNCTION_NAME_OR_ARN[r.Type as string];
    const value = property ? ((r.Properties ?? {}) as JsonObject)[property] : undefined;
    const getAtt = value && typeof value === 'object' && !Array.isArray(value) ? value['Fn::GetAtt'] : undefined;
    const [target, attribute] = Array.isArray(getAtt) ? (getAtt as string[]) : [];
    if (attribute === 'Arn' && resources[target]?.Type === 'AWS::Lambda::Function') {
      out[id] = { ...r, Properties: { ...(r.Properties as JsonObject), [property]: { Ref: target } } };
    } else out[id] = r;
  }
  return out;
}

/** Every difference between two values, one line each: `path: sam <value>, cdk <value>`. */
export function differences(sam: Json | undefined, cdk: Json | undefined, path = ''): string[] {
  if (canonicalJson(sam ?? null) === canonicalJson(cdk ?? null)) return [];
  const bothObjects =
    sam && cdk && typeof sam === 'object' && typeof cdk === 'object' && !Array.isArray(sam) && !Array.isArray(cdk);
  if (bothObjects) {
    const keys = [...new Set([...Object.keys(sam), ...Object.keys(cdk)])].sort();
    return keys.flatMap((k) => differences((sam as JsonObject)[k], (cdk as JsonObject)[k], path ? `${path}.${k}` : k));
  }
  if (Array.isArray(sam) && Array.isArray(cdk) && sam.length === cdk.length) {
    return sam.flatMap((item, i) => differences(item, cdk[i], `${path}[${i}]`));
  }
  const show = (v: Json | undefined) => (v === undefined ? '(absent)' : canonicalJson(v));
  return [`${path || '(top)'}: SAM ${show(sam)} | CDK ${show(cdk)}`];
}
