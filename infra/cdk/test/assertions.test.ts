// The security-relevant parts of the CDK app, asserted with aws-cdk-lib/assertions on the template
// `cdk synth` produces (bundling skipped: the functions' code is a placeholder, every other property
// is what deploys). The SAM template's counterpart is tests/integration/tests/template.rs; the two
// templates are held together by test/equivalence.test.ts.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { ROUTES } from '../lib/jit-access-stack';
import { synthesize } from './helpers';

const { template: json, stack } = synthesize();
const template = Template.fromJSON(json as unknown as { [key: string]: unknown });
const resources = json.Resources;
const logicalId = (construct: { node: { defaultChild?: unknown } }) =>
  stack.getLogicalId((construct.node.defaultChild ?? construct) as never);

type Statement = { Effect: string; Action: string | string[]; Resource: unknown; Condition?: unknown; Principal?: unknown };
const list = <T>(v: T | T[] | undefined): T[] => (v === undefined ? [] : Array.isArray(v) ? v : [v]);

/**
 * Every identity-policy statement of every role, with the role's logical id and, for a managed
 * policy attached under a condition (`Fn::If: [<condition>, {Ref: <policy>}, {Ref: AWS::NoValue}]`),
 * that condition (`when`; null: always attached).
 */
function identityStatements(): { role: string; statement: Statement; when: string | null }[] {
  const out: { role: string; statement: Statement; when: string | null }[] = [];
  for (const [id, r] of Object.entries(resources)) {
    if (r.Type !== 'AWS::IAM::Role') continue;
    const p = r.Properties as { Policies?: { PolicyDocument: { Statement: Statement[] } }[]; ManagedPolicyArns?: unknown[] };
    for (const policy of p.Policies ?? []) for (const s of policy.PolicyDocument.Statement) out.push({ role: id, statement: s, when: null });
    for (const arn of p.ManagedPolicyArns ?? []) {
      const { ref, when } = attachedPolicy(id, arn);
      let doc = (resources[ref].Properties as { PolicyDocument: unknown }).PolicyDocument as unknown;
      if (typeof doc === 'object' && doc !== null && 'Fn::Sub' in doc) doc = JSON.parse((doc as { 'Fn::Sub': string })['Fn::Sub']);
      for (const s of (doc as { Statement: Statement[] }).Statement) out.push({ role: id, statement: s, when });
    }
  }
  return out;
}

/**
 * A role's managed policy: one of the stack's own, by Ref, or by Ref under a condition and nothing
 * otherwise. A policy that exists only under a condition is attached only under that condition.
 */
function attachedPolicy(role: string, arn: unknown): { ref: string; when: string | null } {
  const own = (v: unknown): string | undefined => {
    const ref = (v as { Ref?: unknown } | null)?.Ref;
    return typeof ref === 'string' && resources[ref]?.Type === 'AWS::IAM::ManagedPolicy' ? ref : undefined;
  };
  let ref = own(arn);
  let when: string | null = null;
  const branches = (arn as { 'Fn::If'?: unknown } | null)?.['Fn::If'];
  if (ref === undefined && Array.isArray(branches) && Object.keys(arn as object).length === 1) {
    const [condition, then, otherwise] = branches as unknown[];
    assert.equal(branches.length, 3, `${role}: managed policy ${JSON.stringify(arn)}`);
    assert.ok(typeof condition === 'string' && json.Conditions?.[condition], `${role}: ${JSON.stringify(arn)}: no condition ${condition}`);
    assert.deepEqual(otherwise, { Ref: 'AWS::NoValue' }, `${role}: ${JSON.stringify(arn)}: attaches something else otherwise`);
    ref = own(then);
    when = condition as string;
  }
  assert.ok(ref, `${role}: managed policy ${JSON.stringify(arn)} is not the stack's own`);
  const exists = resources[ref].Condition as string | undefined;
  assert.ok(exists === undefined || exists === when, `${role}: ${ref} exists only if ${exists}, attached ${when ? `if ${when}` : 'always'}`);
  return { ref, when };
}

test('the three functions: Rust on provided.al2023, arm64, bootstrap, their memory, timeout and concurrency', () => {
  const expected = {
    sync: { MemorySize: 1024, Timeout: 600, ReservedConcurrentExecutions: { Ref: 'SyncReservedConcurrency' } },
    grant: { MemorySize: 512, Timeout: 30, ReservedConcurrentExecutions: { Ref: 'GrantReservedConcurrency' } },
    revoke: { MemorySize: 512, Timeout: 60, ReservedConcurrentExecutions: { Ref: 'RevokeReservedConcurrency' } },
  };
  template.resourceCountIs('AWS::Lambda::Function', 3);
  for (const [name, props] of Object.entries(expected)) {
    const fn = stack.functions[name as keyof typeof expected];
    template.hasResource('AWS::Lambda::Function', {
      Properties: {
        FunctionName: { 'Fn::Sub': `\${AWS::StackName}-${name}` },
        Runtime: 'provided.al2023',
        Architectures: ['arm64'],
        Handler: 'bootstrap',
        Role: { 'Fn::GetAtt': [logicalId(stack.roles[name as keyof typeof expected]), 'Arn'] },
        LoggingConfig: { LogGroup: Match.objectLike({ Ref: Match.stringLikeRegexp(`^${name[0].toUpperCase()}${name.slice(1)}LogGroup`) }) },
        ...props,
      },
    });
    assert.ok(logicalId(fn), name);
  }
});

test("every function's environment: the configuration the code reads", () => {
  const common = {
    TABLE_NAME: { Ref: logicalId(stack.table) },
    SECRET_TAG_KEY: { Ref: 'SecretTagKey' },
    SECRET_TAG_VALUE: { Ref: 'SecretTagValue' },
    SCHEDULE_GROUP: { Ref: 'ScheduleGroup' },
    API_ID: { Ref: 'HttpApi' },
    MIN_GRANT_DURATION: { Ref: 'MinGrantDuration' },
    MAX_GRANT_DURATION: { Ref: 'MaxGrantDuration' },
    ADMIN_PRINCIPALS: { Ref: 'AdminPrincipals' },
    SLACK_ENABLED: { Ref: 'SlackEnabled' },
    SLACK_SECRET_TAG_KEY: 'jit-access-slack',
  };
  for (const fn of Object.values(stack.functions)) {
    const props = resources[logicalId(fn)].Properties as { Environment: { Variables: Record<string, unknown> } };
    assert.deepEqual(Object.keys(props.Environment.Variables).length >= 20, true);
    for (const [k, v] of Object.entries(common)) assert.deepEqual(props.Environment.Variables[k], v, `${fn.node.id} ${k}`);
  }
  const grant = (resources[logicalId(stack.functions.grant)].Properties as { Environment: { Variables: Record<string, unknown> } })
    .Environment.Variables;
  assert.deepEqual(grant.REVOKE_FUNCTION_ARN, { 'Fn::GetAtt': [logicalId(stack.functions.revoke), 'Arn'] });
  assert.deepEqual(grant.SCHEDULER_ROLE_ARN, { 'Fn::GetAtt': [logicalId(stack.roles.scheduler), 'Arn'] });
  assert.deepEqual(grant.SCHEDULE_DLQ_ARN, { 'Fn::GetAtt': [logicalId(stack.deadLetterQueue), 'Arn'] });
  assert.equal(grant.JUMPCLOUD_RETRY_BUDGET, '20s');
});

test("revoke's failed asynchronous invocations go to the dead-letter queue; sync is not retried", () => {
  template.hasResourceProperties('AWS::Lambda::EventInvokeConfig', {
    FunctionName: { Ref: logicalId(stack.functions.revoke) },
    MaximumRetryAttempts: 2,
    MaximumEventAgeInSeconds: 3600,
    DestinationConfig: { OnFailure: { Destination: { 'Fn::GetAtt': [logicalId(stack.deadLetterQueue), 'Arn'] } } },
  });
  template.hasResourceProperties('AWS::Lambda::EventInvokeConfig', {
    FunctionName: { Ref: logicalId(stack.functions.sync) },
    MaximumRetryAttempts: 0,
  });
});

test('no IAM statement allows every action, and only ListSecrets (no resource-level permissions) every resource', () => {
  const statements = identityStatements();
  assert.ok(statements.length > 20);
  for (const { role, statement } of statements) {
    for (const action of list(statement.Action)) assert.ok(!action.includes('*'), `${role}: action ${action}`);
    if (list(statement.Resource).includes('*')) {
      assert.deepEqual(list(statement.Action), ['secretsmanager:ListSecrets'], `${role}: Resource "*"`);
    }
  }
});

test('secrets are read only when tagged: the integration tag, or the Slack tag (grant and revoke, with Slack on)', () => {
  const reads = identityStatements().filter(({ statement }) => list(statement.Action).includes('secretsmanager:GetSecretValue'));
  assert.equal(reads.length, 3 + 2, 'three roles read integrations, grant and revoke the Slack secret');
  const integration = JSON.stringify({ StringEquals: { 'secretsmanager:ResourceTag/${SecretTagKey}': '${SecretTagValue}' } });
  const slack = JSON.stringify({ StringEquals: { 'secretsmanager:ResourceTag/jit-access-slack': 'true' } });
  const slackReaders: string[] = [];
  for (const { role, statement, when } of reads) {
    const tagged = JSON.stringify(statement.Condition);
    assert.ok(tagged === integration || tagged === slack, `${role}: GetSecretValue under ${tagged}`);
    // The integrations are read whatever the parameters; the Slack secret only with SlackEnabled "true".
    assert.equal(when, tagged === slack ? 'SlackOn' : null, `${role}: GetSecretValue under ${tagged}, attached if ${when}`);
    if (tagged === slack) slackReaders.push(role);
  }
  assert.deepEqual(slackReaders.sort(), [logicalId(stack.roles.grant), logicalId(stack.roles.revoke)].sort());
  const slackSecretPolicy = resources[logicalId(stack.node.findChild('SlackSecretPolicy'))];
  assert.equal(slackSecretPolicy.Condition, 'SlackOn', 'the Slack secret\'s policy exists only with SlackEnabled "true"');
  assert.deepEqual(json.Conditions?.SlackOn, { 'Fn::Equals': [{ Ref: 'SlackEnabled' }, 'true'] });
  for (const role of [stack.roles.sync, stack.roles.scheduler]) {
    assert.ok(
      !JSON.stringify(resources[logicalId(role)]).includes(logicalId(stack.node.findChild('SlackSecretPolicy'))),
      `${role.node.id} does not read the Slack secret`,
    );
  }
});

test('every function role is denied changing or deleting audit records', () => {
  for (const name of ['sync', 'grant', 'revoke'] as const) {
    const denies = identityStatements().filter(({ role, statement }) => role === logicalId(stack.roles[name]) && statement.Effect === 'Deny');
    assert.deepEqual(
      denies.map(({ statement }) => statement),
      [
        {
          Sid: 'AuditAppendOnly',
          Effect: 'Deny',
          Action: ['dynamodb:UpdateItem', 'dynamodb:DeleteItem', 'dynamodb:BatchWriteItem'],
          Resource: { 'Fn::GetAtt': [logicalId(stack.table), 'Arn'] },
          Condition: { 'ForAnyValue:StringLike': { 'dynamodb:LeadingKeys': ['AUDIT#*'] } },
        },
      ],
      name,
    );
  }
});

test('only grant passes the scheduler role, to Scheduler only; only this account\'s schedules assume it', () => {
  const passes = identityStatements().filter(({ statement }) => list(statement.Action).includes('iam:PassRole'));
  assert.deepEqual(passes.map(({ role }) => role), [logicalId(stack.roles.grant)]);
  assert.deepEqual(passes[0].statement.Condition, { StringEquals: { 'iam:PassedToService': 'scheduler.amazonaws.com' } });
  const trust = (resources[logicalId(stack.roles.scheduler)].Properties as { AssumeRolePolicyDocument: { Statement: Statement[] } })
    .AssumeRolePolicyDocument.Statement;
  assert.equal(trust.length, 1);
  assert.deepEqual(trust[0].Principal, { Service: 'scheduler.amazonaws.com' });
  const condition = trust[0].Condition as { StringEquals: unknown; ArnLike: { 'aws:SourceArn': unknown[] } };
  assert.deepEqual(condition.StringEquals, { 'aws:SourceAccount': { Ref: 'AWS::AccountId' } });
  assert.deepEqual(condition.ArnLike['aws:SourceArn'], [
    {
      'Fn::Join': [
        '',
        [
          'arn:',
          { Ref: 'AWS::Partition' },
          ':scheduler:',
          { Ref: 'AWS::Region' },
          ':',
          { Ref: 'AWS::AccountId' },
          ':schedule/',
          { Ref: 'ScheduleGroup' },
          '/*',
        ],
      ],
    },
    { 'Fn::Sub': 'arn:${AWS::Partition}:scheduler:${AWS::Region}:${AWS::AccountId}:schedule/default/*' },
  ]);
});

test('every route is authorized (AWS_IAM, or JWT when chosen) but Slack\'s and, in JWT mode, the portal\'s', () => {
  const byKey = new Map(
    Object.entries(resources)
      .filter(([, r]) => r.Type === 'AWS::ApiGatewayV2::Route')
      .map(([, r]) => [(r.Properties as { RouteKey: string }).RouteKey, r as { Properties: unknown; Condition?: unknown }]),
  );
  assert.equal(byKey.size, ROUTES.length);
  for (const route of ROUTES) {
    const r = byKey.get(route.routeKey);
    assert.ok(r, route.routeKey);
    const p = r.Properties as { AuthorizationType: unknown; AuthorizerId?: unknown };
    if (route.access === 'authorized') {
      assert.deepEqual(p.AuthorizationType, { 'Fn::If': ['UseJwt', 'JWT', 'AWS_IAM'] }, route.routeKey);
      assert.deepEqual(p.AuthorizerId, { 'Fn::If': ['UseJwt', { Ref: 'JwtAuthorizer' }, { Ref: 'AWS::NoValue' }] });
      assert.equal(r.Condition, undefined);
    } else {
      assert.equal(p.AuthorizationType, 'NONE', route.routeKey);
      assert.equal(r.Condition, route.jwtOnly ? 'UseJwt' : undefined, route.routeKey);
    }
  }
  const open = ROUTES.filter((r) => r.access === 'public').map((r) => r.routeKey);
  assert.deepEqual(open, ['POST /slack/interactions', 'GET /', 'GET /assets/{version}/{file}', 'GET /portal/config.json']);
  template.hasResourceProperties('AWS::ApiGatewayV2::Authorizer', {
    AuthorizerType: 'JWT',
    JwtConfiguration: { Issuer: { Ref: 'JwtIssuer' }, Audience: { 'Fn::Split': [',', { Ref: 'JwtAudience' }] } },
  });
  template.hasResource('AWS::ApiGatewayV2::Authorizer', { Condition: 'UseJwt' });
});

test("API Gateway invokes each function only through its routes; the stage throttles and logs", () => {
  const permissions = Object.values(resources).filter(
    (r) => r.Type === 'AWS::Lambda::Permission' && (r.Properties as { Principal: string }).Principal === 'apigateway.amazonaws.com',
  );
  assert.equal(permissions.length, ROUTES.length);
  for (const permission of permissions) {
    const source = JSON.stringify((permission.Properties as { SourceArn: unknown }).SourceArn);
    assert.match(source, /:execute-api:.*\/\*\/(GET|POST|DELETE)\//, source);
  }
  template.hasResourceProperties('AWS::ApiGatewayV2::Stage', {
    DefaultRouteSettings: { ThrottlingBurstLimit: 50, ThrottlingRateLimit: 20 },
    RouteSettings: { 'POST /slack/interactions': { ThrottlingBurstLimit: 10, ThrottlingRateLimit: 5 } },
    AccessLogSettings: { DestinationArn: Match.anyValue(), Format: Match.stringLikeRegexp('userArn') },
  });
});

test('the table keeps the audit trail: retained, deletion protection, point-in-time recovery', () => {
  template.hasResource('AWS::DynamoDB::Table', {
    DeletionPolicy: 'Retain',
    UpdateReplacePolicy: 'Retain',
    Properties: Match.objectLike({
      BillingMode: 'PAY_PER_REQUEST',
      KeySchema: [
        { AttributeName: 'pk', KeyType: 'HASH' },
        { AttributeName: 'sk', KeyType: 'RANGE' },
      ],
      DeletionProtectionEnabled: true,
      PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true },
      TimeToLiveSpecification: { AttributeName: 'ttl', Enabled: true },
    }),
  });
});

test('schedules retry and keep their dead letters; the sweep lives outside the functions\' schedule group', () => {
  const dlqArn = { 'Fn::GetAtt': [logicalId(stack.deadLetterQueue), 'Arn'] };
  template.hasResourceProperties('AWS::Scheduler::Schedule', {
    ScheduleExpression: { Ref: 'SweepScheduleExpression' },
    FlexibleTimeWindow: { Mode: 'OFF' },
    Target: {
      Arn: { 'Fn::GetAtt': [logicalId(stack.functions.revoke), 'Arn'] },
      RoleArn: { 'Fn::GetAtt': [logicalId(stack.roles.scheduler), 'Arn'] },
      Input: '{"source": "jit-access.sweep", "detail-type": "Sweep Expired Grants", "detail": {}}',
      RetryPolicy: { MaximumRetryAttempts: 2, MaximumEventAgeInSeconds: 300 },
      DeadLetterConfig: { Arn: dlqArn },
    },
  });
  const sweep = Object.values(resources).find((r) => r.Type === 'AWS::Scheduler::Schedule')!;
  assert.equal((sweep.Properties as { GroupName?: unknown }).GroupName, undefined, 'the default group');
  template.hasResourceProperties('AWS::Events::Rule', {
    ScheduleExpression: { Ref: 'SyncScheduleExpression' },
    Targets: [
      Match.objectLike({
        Id: 'sync',
        RetryPolicy: { MaximumRetryAttempts: 2, MaximumEventAgeInSeconds: 600 },
        DeadLetterConfig: { Arn: dlqArn },
      }),
    ],
  });
  template.hasResourceProperties('AWS::SQS::Queue', { SqsManagedSseEnabled: true, MessageRetentionPeriod: 1209600 });
});

test('alarms notify the alarm topic only when one is given', () => {
  template.resourceCountIs('AWS::CloudWatch::Alarm', 9);
  const conditional = Object.entries(resources)
    .filter(([, r]) => r.Type === 'AWS::CloudWatch::Alarm' && r.Condition !== undefined)
    .map(([id, r]) => `${id} if ${r.Condition}`);
  assert.deepEqual(conditional.sort(), ['SlackFailuresAlarm if SlackOn', 'SlackSignatureRefusalsAlarm if SlackOn']);
  template.allResourcesProperties('AWS::CloudWatch::Alarm', {
    AlarmActions: { 'Fn::If': ['HasAlarmTopic', [{ Ref: 'AlarmTopicArn' }], { Ref: 'AWS::NoValue' }] },
    OKActions: { 'Fn::If': ['HasAlarmTopic', [{ Ref: 'AlarmTopicArn' }], { Ref: 'AWS::NoValue' }] },
  });
  template.hasResourceProperties('AWS::Logs::MetricFilter', { FilterPattern: '{ $.event = "revocation_failed" }' });
});

test('the notification topic exists only when asked for, is encrypted, and only its rule publishes', () => {
  for (const type of ['AWS::KMS::Key', 'AWS::SNS::Topic', 'AWS::SNS::TopicPolicy', 'AWS::Events::Rule']) {
    const conditional = Object.values(resources).filter((r) => r.Type === type && r.Condition === 'HasNotificationTopic');
    assert.equal(conditional.length, 1, type);
  }
  template.hasResource('AWS::SNS::Subscription', { Condition: 'HasNotificationEmail' });
  template.hasResourceProperties('AWS::KMS::Key', { EnableKeyRotation: true });
  template.hasResourceProperties('AWS::SNS::Topic', { KmsMasterKeyId: { 'Fn::GetAtt': ['NotificationKey', 'Arn'] } });
  template.hasResourceProperties('AWS::SNS::TopicPolicy', {
    PolicyDocument: {
      Statement: [
        Match.objectLike({
          Principal: { Service: 'events.amazonaws.com' },
          Action: 'sns:Publish',
          Condition: { ArnEquals: { 'aws:SourceArn': { 'Fn::GetAtt': ['NotificationRule', 'Arn'] } } },
        }),
      ],
    },
  });
});

test('log groups keep LogRetentionInDays and go with the stack', () => {
  template.resourceCountIs('AWS::Logs::LogGroup', 4);
  template.allResourcesProperties('AWS::Logs::LogGroup', { RetentionInDays: { Ref: 'LogRetentionInDays' } });
  for (const r of Object.values(resources).filter((r) => r.Type === 'AWS::Logs::LogGroup')) {
    assert.equal(r.DeletionPolicy, 'Delete');
  }
});
