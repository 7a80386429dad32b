// The CDK app and the SAM template deploy the same stack: both are normalized (test/normalize.ts:
// canonical resource names instead of logical ids, intrinsic functions in one form, policy
// statements as sorted sets) and compared, aspect by aspect and then property by property. Each
// test fails listing every difference it finds, as `where: SAM <value> | CDK <value>`.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { samTemplate, synthesize } from './helpers';
import {
  Json,
  JsonObject,
  Normalized,
  NormalizedResource,
  Template,
  asList,
  canonicalJson,
  differences,
  normalize,
} from './normalize';

const cdkTemplate = synthesize().template;
const sam = normalize(samTemplate(), 'sam');
const cdk = normalize(cdkTemplate, 'cdk');

function assertNoDifference(what: string, found: string[]): void {
  if (found.length > 0) assert.fail(`SAM and CDK differ in ${what}:\n  ${found.join('\n  ')}`);
}

function ofType(n: Normalized, ...types: string[]): { [name: string]: NormalizedResource } {
  return Object.fromEntries(Object.entries(n.resources).filter(([, r]) => types.includes(r.Type)));
}

/** Two lists compared as multisets: `only in SAM: x` / `only in CDK: y`. */
function setDifferences(samItems: string[], cdkItems: string[]): string[] {
  const count = (items: string[]) => items.reduce((m, i) => m.set(i, (m.get(i) ?? 0) + 1), new Map<string, number>());
  const s = count(samItems);
  const c = count(cdkItems);
  const out: string[] = [];
  for (const [item, n] of s) for (let i = c.get(item) ?? 0; i < n; i++) out.push(`only in SAM: ${item}`);
  for (const [item, n] of c) for (let i = s.get(item) ?? 0; i < n; i++) out.push(`only in CDK: ${item}`);
  return out.sort();
}

// ---------------------------------------------------------------------------------------------
// Aspects: each a view of a normalized template; equal views, equal aspect.
// ---------------------------------------------------------------------------------------------

function typeCounts(n: Normalized): string[] {
  const counts = new Map<string, number>();
  for (const r of Object.values(n.resources)) counts.set(r.Type, (counts.get(r.Type) ?? 0) + 1);
  return [...counts].map(([type, count]) => `${type} x${count}`);
}

/**
 * Every IAM statement, one line each: whose document it is (the role, inline policy or managed
 * policy it applies through, the resource policy, the trust policy), with effect, principal,
 * actions, resources and conditions. Lambda permissions are resource policies too.
 */
function iamStatements(n: Normalized): string[] {
  const lines: string[] = [];
  const add = (owner: string, document: Json) => {
    for (const s of asList((document as JsonObject).Statement)) lines.push(`${owner}: ${canonicalJson(s)}`);
  };
  for (const [name, r] of Object.entries(n.resources)) {
    const p = r.Properties;
    const when = r.Condition ? ` (if ${r.Condition})` : '';
    switch (r.Type) {
      case 'AWS::IAM::Role':
        add(`${name} trust${when}`, p.AssumeRolePolicyDocument);
        for (const policy of asList(p.Policies)) {
          add(`${name} inline ${(policy as JsonObject).PolicyName}${when}`, (policy as JsonObject).PolicyDocument);
        }
        for (const arn of asList(p.ManagedPolicyArns)) {
          const { policy, attached } = attachment(arn);
          const managed = policy === undefined ? undefined : n.resources[policy.replace(/^\$\{(.*)\}$/, '$1')];
          if (!managed) {
            lines.push(`${name}: managed policy ${canonicalJson(arn)}, not the stack's own: its statements cannot be compared`);
          } else {
            const exists = managed.Condition ? ` (exists if ${managed.Condition})` : '';
            add(`${name} through ${policy}${exists}${attached}${when}`, managed.Properties.PolicyDocument);
          }
        }
        break;
      case 'AWS::IAM::Policy':
      case 'AWS::IAM::ManagedPolicy':
        for (const role of asList(p.Roles)) add(`${role} through ${name}${when}`, p.PolicyDocument);
        if (r.Type === 'AWS::IAM::Policy' && asList(p.Roles).length === 0) add(`${name} (attached to nothing)`, p.PolicyDocument);
        break;
      case 'AWS::SQS::QueuePolicy':
      case 'AWS::SNS::TopicPolicy':
        add(`${name}${when}`, p.PolicyDocument);
        break;
      case 'AWS::KMS::Key':
        add(`${name} key policy${when}`, p.KeyPolicy);
        break;
      case 'AWS::Lambda::Permission':
        lines.push(`${p.FunctionName} invoked by: ${canonicalJson({ ...p, FunctionName: null })}${when}`);
        break;
    }
  }
  return lines;
}

/**
 * A role's managed policy ARN, normalized: the policy (`${<canonical name>}`, or whatever else it
 * is) and, when it is attached under a condition (`Fn::If` with `AWS::NoValue` in one branch), the
 * condition as part of whose the statements are: ` (attached if SlackOn)`, ` (attached unless ...)`.
 */
function attachment(arn: Json): { policy: string | undefined; attached: string } {
  if (typeof arn === 'string') return { policy: arn, attached: '' };
  const branches = arn !== null && typeof arn === 'object' && !Array.isArray(arn) && Object.keys(arn).length === 1 ? arn['Fn::If'] : undefined;
  if (Array.isArray(branches) && branches.length === 3 && typeof branches[0] === 'string') {
    const [condition, then, otherwise] = branches;
    const none = '${AWS::NoValue}';
    if (typeof then === 'string' && otherwise === none) return { policy: then, attached: ` (attached if ${condition})` };
    if (then === none && typeof otherwise === 'string') return { policy: otherwise, attached: ` (attached unless ${condition})` };
  }
  return { policy: undefined, attached: '' };
}

function routes(n: Normalized): JsonObject {
  return Object.fromEntries(
    Object.values(ofType(n, 'AWS::ApiGatewayV2::Route')).map((r) => [
      r.Properties.RouteKey as string,
      {
        AuthorizationType: r.Properties.AuthorizationType ?? null,
        AuthorizerId: r.Properties.AuthorizerId ?? null,
        Target: r.Properties.Target ?? null,
        Condition: r.Condition,
      },
    ]),
  );
}

function tables(n: Normalized): JsonObject {
  return Object.fromEntries(
    Object.entries(ofType(n, 'AWS::DynamoDB::Table')).map(([name, r]) => [
      name,
      {
        KeySchema: r.Properties.KeySchema ?? null,
        AttributeDefinitions: r.Properties.AttributeDefinitions ?? null,
        GlobalSecondaryIndexes: r.Properties.GlobalSecondaryIndexes ?? null,
        LocalSecondaryIndexes: r.Properties.LocalSecondaryIndexes ?? null,
        BillingMode: r.Properties.BillingMode ?? null,
        TimeToLiveSpecification: r.Properties.TimeToLiveSpecification ?? null,
        PointInTimeRecoverySpecification: r.Properties.PointInTimeRecoverySpecification ?? null,
        DeletionProtectionEnabled: r.Properties.DeletionProtectionEnabled ?? null,
        DeletionPolicy: r.DeletionPolicy,
        UpdateReplacePolicy: r.UpdateReplacePolicy,
      },
    ]),
  );
}

function whole(n: Normalized, ...types: string[]): JsonObject {
  return ofType(n, ...types) as unknown as JsonObject;
}

// ---------------------------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------------------------

test('the same parameters (type, default, constraints, description)', () => {
  assertNoDifference('parameters', differences(sam.parameters, cdk.parameters, 'Parameters'));
});

test('the same conditions and rules', () => {
  assertNoDifference('conditions', differences(sam.conditions, cdk.conditions, 'Conditions'));
  assertNoDifference('rules', differences(sam.rules, cdk.rules, 'Rules'));
});

test('the same outputs (name, value, condition, description)', () => {
  assertNoDifference('outputs', differences(sam.outputs, cdk.outputs, 'Outputs'));
});

test('the same resource types, as many of each', () => {
  assertNoDifference('resource types', setDifferences(typeCounts(sam), typeCounts(cdk)));
});

test('the same resources, one for one', () => {
  assertNoDifference('resources', setDifferences(Object.keys(sam.resources), Object.keys(cdk.resources)));
});

test('every IAM statement: effect, principal, actions, resources, conditions, and whose it is', () => {
  const samLines = iamStatements(sam);
  assert.ok(samLines.length > 40, `only ${samLines.length} statements read from the SAM template`);
  assertNoDifference('IAM statements', setDifferences(samLines, iamStatements(cdk)));
});

test('every API route, its authorization and its target', () => {
  assert.ok(Object.keys(routes(sam)).length > 10, 'the routes are read from the SAM template');
  assertNoDifference('routes', differences(routes(sam), routes(cdk), 'Routes'));
  assertNoDifference(
    'the API, its stage, authorizer and integrations',
    differences(
      whole(sam, 'AWS::ApiGatewayV2::Api', 'AWS::ApiGatewayV2::Stage', 'AWS::ApiGatewayV2::Authorizer', 'AWS::ApiGatewayV2::Integration'),
      whole(cdk, 'AWS::ApiGatewayV2::Api', 'AWS::ApiGatewayV2::Stage', 'AWS::ApiGatewayV2::Authorizer', 'AWS::ApiGatewayV2::Integration'),
    ),
  );
});

test('the table: keys, indexes, TTL, recovery, deletion protection and retention', () => {
  assertNoDifference('the table', differences(tables(sam), tables(cdk)));
});

test('the functions: runtime, architecture, handler, memory, timeout, environment, concurrency, asynchronous invocations', () => {
  const types = ['AWS::Lambda::Function', 'AWS::Lambda::EventInvokeConfig'];
  assertNoDifference('functions', differences(whole(sam, ...types), whole(cdk, ...types)));
});

test('the schedules: the sync rule, the sweep, the schedule group, the bus, the dead-letter queue', () => {
  const types = [
    'AWS::Events::Rule',
    'AWS::Scheduler::Schedule',
    'AWS::Scheduler::ScheduleGroup',
    'AWS::Events::EventBus',
    'AWS::SQS::Queue',
  ];
  assertNoDifference('schedules', differences(whole(sam, ...types), whole(cdk, ...types)));
});

test('the alarms, metric filters and log groups', () => {
  const types = ['AWS::CloudWatch::Alarm', 'AWS::Logs::MetricFilter', 'AWS::Logs::LogGroup'];
  assert.equal(Object.keys(ofType(sam, 'AWS::CloudWatch::Alarm')).length, 9);
  assertNoDifference('alarms', differences(whole(sam, ...types), whole(cdk, ...types)));
});

test('every property of every resource (what the aspects above do not cover: notifications, ...)', () => {
  assertNoDifference('resources', differences(sam.resources as unknown as Json, cdk.resources as unknown as Json));
});

// ---------------------------------------------------------------------------------------------
// The comparison itself: it must see what it claims to compare.
// ---------------------------------------------------------------------------------------------

test('the comparison reports a widened action, a conditional policy attached always, a route left open, a lost alarm and a changed default', () => {
  const changed = JSON.parse(JSON.stringify(cdkTemplate)) as Template;
  const resources = Object.values(changed.Resources);
  const role = resources.find((r) => r.Type === 'AWS::IAM::Role' && JSON.stringify(r).includes('the grant function'))!;
  const statements = ((role.Properties as JsonObject).Policies as JsonObject[])[0].PolicyDocument as JsonObject;
  (statements.Statement as JsonObject[]).push({ Effect: 'Allow', Action: 'dynamodb:Scan', Resource: '*' });
  // The Slack secret's policy, attached to grant whatever SlackEnabled says.
  const managed = (role.Properties as JsonObject).ManagedPolicyArns as Json[];
  const conditional = managed.findIndex((arn) => canonicalJson(arn).includes('"Fn::If":["SlackOn"'));
  assert.ok(conditional >= 0, `grant's managed policies: ${canonicalJson(managed)}`);
  managed[conditional] = ((managed[conditional] as JsonObject)['Fn::If'] as Json[])[1];
  const route = resources.find((r) => (r.Properties as JsonObject)?.RouteKey === 'DELETE /grants/{id}')!;
  (route.Properties as JsonObject).AuthorizationType = 'NONE';
  delete (route.Properties as JsonObject).AuthorizerId;
  const alarmId = Object.keys(changed.Resources).find((id) => changed.Resources[id].Type === 'AWS::CloudWatch::Alarm')!;
  delete changed.Resources[alarmId];
  (changed.Parameters!.MaxGrantDuration as JsonObject).Default = '24h';

  const other = normalize(changed, 'cdk');
  const statementsFound = setDifferences(iamStatements(sam), iamStatements(other));
  assert.ok(statementsFound.some((d) => d.startsWith('only in CDK:') && d.includes('dynamodb:Scan')), statementsFound.join('\n'));
  const slackRead = (d: string) => d.includes('secretsmanager:ResourceTag/jit-access-slack') && d.includes('the grant function');
  assert.ok(
    statementsFound.some((d) => d.startsWith('only in SAM:') && slackRead(d) && d.includes('(attached if SlackOn)')) &&
      statementsFound.some((d) => d.startsWith('only in CDK:') && slackRead(d) && !d.includes('(attached if')),
    statementsFound.join('\n'),
  );
  const routesFound = differences(routes(sam), routes(other), 'Routes');
  assert.ok(routesFound.some((d) => d.includes('DELETE /grants/{id}') && d.includes('"NONE"')), routesFound.join('\n'));
  assert.ok(setDifferences(typeCounts(sam), typeCounts(other)).some((d) => d.includes('AWS::CloudWatch::Alarm')));
  assert.deepEqual(differences(sam.parameters, other.parameters, 'Parameters'), [
    'Parameters.MaxGrantDuration.Default: SAM "12h" | CDK "24h"',
  ]);
});
