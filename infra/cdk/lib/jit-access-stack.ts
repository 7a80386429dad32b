// The CDK form of infra/template.yaml: the same resources, parameters, conditions, outputs and
// least-privilege policies, section by section in the template's order. The template's comments say
// why each thing is the way it is; this file says only where the CDK form differs and why.
// test/equivalence.test.ts synthesizes this stack and compares it with the SAM template after SAM's
// transform: a difference fails the test.
//
// L2 constructs where they render what the template says; L1 (Cfn*) where an L2 would add
// something the template does not have (a generated name, a grant wider than the role's own
// statement, a second policy for the same permission) or cannot express it (a route's
// authorization chosen by a parameter, a resource that exists only under a condition).
import * as path from 'node:path';
import {
  Aws,
  CfnOutput,
  Duration,
  Fn,
  RemovalPolicy,
  Stack,
  StackProps,
  Token,
  aws_apigatewayv2 as apigw,
  aws_cloudwatch as cloudwatch,
  aws_dynamodb as dynamodb,
  aws_events as events,
  aws_events_targets as targets,
  aws_iam as iam,
  aws_kms as kms,
  aws_lambda as lambda,
  aws_logs as logs,
  aws_scheduler as scheduler,
  aws_sns as sns,
  aws_sqs as sqs,
} from 'aws-cdk-lib';
import { RustFunction } from 'cargo-lambda-cdk';
import { Construct } from 'constructs';
import { Conditions, Parameters, defineConditions, defineParameters, defineRules } from './parameters';

export interface JitAccessStackProps extends StackProps {
  /** The repository's root: its Cargo.toml is the workspace cargo-lambda builds the functions from. */
  readonly repositoryRoot: string;
}

/** The three functions, by binary name (functions/<name>). */
export type FunctionName = 'sync' | 'grant' | 'revoke';

/** One HTTP API route: its key, the function behind it, and whether it is public. */
export interface RouteSpec {
  /** The template's logical id of the route; its permission is `<id without Route>Permission`. */
  readonly id: string;
  readonly routeKey: string;
  readonly target: FunctionName;
  /**
   * `authorized`: AWS_IAM, or JWT when ApiAuthorization is JWT. `public`: no authorization
   * (Slack signs its requests; the portal's page and files load before anyone signs in).
   */
  readonly access: 'authorized' | 'public';
  /** The route exists only in JWT mode (the portal: a browser cannot sign with SigV4). */
  readonly jwtOnly?: boolean;
}

/** The HTTP API's routes, as in the template (CONTRIBUTING.md, "Add a route": add it to both). */
export const ROUTES: readonly RouteSpec[] = [
  { id: 'CreateGrantRoute', routeKey: 'POST /grants', target: 'grant', access: 'authorized' },
  { id: 'ApproveGrantRoute', routeKey: 'POST /grants/{id}/approve', target: 'grant', access: 'authorized' },
  { id: 'ExtendGrantRoute', routeKey: 'POST /grants/{id}/extend', target: 'grant', access: 'authorized' },
  { id: 'DenyGrantRoute', routeKey: 'POST /grants/{id}/deny', target: 'grant', access: 'authorized' },
  { id: 'ListGrantsRoute', routeKey: 'GET /grants', target: 'grant', access: 'authorized' },
  { id: 'GetGrantRoute', routeKey: 'GET /grants/{id}', target: 'grant', access: 'authorized' },
  { id: 'ListGroupsRoute', routeKey: 'GET /groups', target: 'grant', access: 'authorized' },
  { id: 'GetPolicyRoute', routeKey: 'GET /policy', target: 'grant', access: 'authorized' },
  { id: 'MeRoute', routeKey: 'GET /me', target: 'grant', access: 'authorized' },
  { id: 'IntegrationsRoute', routeKey: 'GET /integrations', target: 'grant', access: 'authorized' },
  { id: 'AuditRoute', routeKey: 'GET /audit', target: 'grant', access: 'authorized' },
  { id: 'RevokeGrantRoute', routeKey: 'DELETE /grants/{id}', target: 'revoke', access: 'authorized' },
  { id: 'OpenApiRoute', routeKey: 'GET /openapi.json', target: 'grant', access: 'authorized' },
  { id: 'SyncRoute', routeKey: 'POST /sync', target: 'sync', access: 'authorized' },
  { id: 'SlackInteractionsRoute', routeKey: 'POST /slack/interactions', target: 'grant', access: 'public' },
  { id: 'PortalPageRoute', routeKey: 'GET /', target: 'grant', access: 'public', jwtOnly: true },
  { id: 'PortalAssetRoute', routeKey: 'GET /assets/{version}/{file}', target: 'grant', access: 'public', jwtOnly: true },
  { id: 'PortalConfigRoute', routeKey: 'GET /portal/config.json', target: 'grant', access: 'public', jwtOnly: true },
];

/** The part of execute-api's ARN after the stage that a route key matches: `{id}` is `*`. */
export function routeArnSuffix(routeKey: string): string {
  const [method, routePath] = routeKey.split(' ');
  return `${method}${routePath.replace(/\{[^}]+\}/g, '*')}`;
}

/**
 * An on-failure destination given by its ARN, granting nothing: the function's role holds the one
 * permission the destination needs (`sqs:SendMessage` on the queue, statement FailedInvocations),
 * where `SqsDestination` would add `sqs:GetQueueAttributes` and `sqs:GetQueueUrl` too.
 */
class QueueArnDestination implements lambda.IDestination {
  constructor(private readonly queue: sqs.IQueue) {}
  bind(): lambda.DestinationConfig {
    return { destination: this.queue.queueArn };
  }
}

const NOTIFIED_EVENTS = [
  'Approval Requested',
  'Request Approved',
  'Request Denied',
  'Request Cancelled',
  'Request Expired',
  'Break Glass Used',
  'Extension Requested',
  'Grant Extended',
  'Grant Expiring Soon',
];

export class JitAccessStack extends Stack {
  readonly parameters: Parameters;
  readonly conditions: Conditions;
  readonly table: dynamodb.Table;
  readonly functions: Record<FunctionName, RustFunction>;
  readonly roles: Record<FunctionName | 'scheduler', iam.Role>;
  readonly deadLetterQueue: sqs.Queue;
  readonly httpApi: apigw.CfnApi;

  constructor(scope: Construct, id: string, props: JitAccessStackProps) {
    super(scope, id, props);
    const p = (this.parameters = defineParameters(this));
    const c = (this.conditions = defineConditions(this, p));
    defineRules(this, p);
    const stackName = Aws.STACK_NAME;
    const sub = (text: string) => Fn.sub(text);

    // ===========================================================================================
    // State
    // ===========================================================================================

    // Must equal shared/src/adapters/dynamodb/table.rs: the equivalence test holds it to the template's
    // table, which tests/integration/tests/template.rs holds to table.rs. Retained: the audit trail.
    this.table = new dynamodb.Table(this, 'Table', {
      partitionKey: { name: 'pk', type: dynamodb.AttributeType.STRING },
      sortKey: { name: 'sk', type: dynamodb.AttributeType.STRING },
      billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
      timeToLiveAttribute: 'ttl',
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
      deletionProtection: true,
      removalPolicy: RemovalPolicy.RETAIN,
    });
    for (const index of ['gsi1', 'gsi2']) {
      this.table.addGlobalSecondaryIndex({
        indexName: index,
        partitionKey: { name: `${index}pk`, type: dynamodb.AttributeType.STRING },
        sortKey: { name: `${index}sk`, type: dynamodb.AttributeType.STRING },
        projectionType: dynamodb.ProjectionType.ALL,
      });
    }
    const table = this.table;

    const eventBus = new events.EventBus(this, 'EventBus', { eventBusName: stackName });

    // L1: the L2 ScheduleGroup gives the group a generated name; the template lets CloudFormation name it.
    const scheduleGroup = new scheduler.CfnScheduleGroup(this, 'ScheduleGroup');

    // Dead letters of every schedule delivery and of revoke's failed asynchronous invocations.
    const dlq = (this.deadLetterQueue = new sqs.Queue(this, 'ScheduleDeadLetterQueue', {
      retentionPeriod: Duration.days(14),
      encryption: sqs.QueueEncryption.SQS_MANAGED,
    }));

    // The fanned-out full sync's parts, worked by the sync function itself (the event source
    // mapping below); a part failing its fifth delivery (domain::fanout::PART_ATTEMPTS) stays in
    // the dead-letter queue. Visibility: six times the function's timeout, as AWS advises.
    const syncPartsDlq = new sqs.Queue(this, 'SyncPartsDeadLetterQueue', {
      queueName: sub('${AWS::StackName}-sync-parts-dead-letters'),
      retentionPeriod: Duration.days(14),
      encryption: sqs.QueueEncryption.SQS_MANAGED,
    });
    const syncParts = new sqs.Queue(this, 'SyncPartsQueue', {
      queueName: sub('${AWS::StackName}-sync-parts'),
      visibilityTimeout: Duration.seconds(3600),
      retentionPeriod: Duration.days(1),
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      deadLetterQueue: { queue: syncPartsDlq, maxReceiveCount: 5 },
    });

    // The HTTP API comes before the functions: they read its id (API_ID).
    const api = (this.httpApi = new apigw.CfnApi(this, 'HttpApi', {
      name: stackName,
      description: 'Just-in-time JumpCloud group access',
      protocolType: 'HTTP',
    }));

    // ===========================================================================================
    // Log groups: each function's and the API's, removed with the stack (as the template's).
    // ===========================================================================================
    const retention = p.LogRetentionInDays.valueAsNumber as logs.RetentionDays;
    const logGroup = (id: string, name: string) =>
      new logs.LogGroup(this, id, { logGroupName: sub(name), retention, removalPolicy: RemovalPolicy.DESTROY });
    const logGroups: Record<FunctionName, logs.LogGroup> = {
      sync: logGroup('SyncLogGroup', '/aws/lambda/${AWS::StackName}-sync'),
      grant: logGroup('GrantLogGroup', '/aws/lambda/${AWS::StackName}-grant'),
      revoke: logGroup('RevokeLogGroup', '/aws/lambda/${AWS::StackName}-revoke'),
    };
    const apiAccessLogGroup = logGroup('ApiAccessLogGroup', '/aws/apigateway/${AWS::StackName}');

    // ===========================================================================================
    // Least privilege: each role lists exactly what its function calls (the template's comments
    // say why each statement is there).
    // ===========================================================================================

    // L1 with the document as a JSON string under Fn::Sub, as in the template: the condition key
    // carries the tag key parameter, and a JSON key cannot be a token.
    const integrationSecretsPolicy = new iam.CfnManagedPolicy(this, 'IntegrationSecretsPolicy', {
      description: sub('${AWS::StackName}: find integration secrets; read only those tagged ${SecretTagKey}=${SecretTagValue}'),
      policyDocument: Fn.sub(
        JSON.stringify({
          Version: '2012-10-17',
          Statement: [
            { Sid: 'FindIntegrationSecrets', Effect: 'Allow', Action: 'secretsmanager:ListSecrets', Resource: '*' },
            {
              Sid: 'ReadTaggedIntegrationSecrets',
              Effect: 'Allow',
              Action: 'secretsmanager:GetSecretValue',
              Resource: 'arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:*',
              Condition: { StringEquals: { 'secretsmanager:ResourceTag/${SecretTagKey}': '${SecretTagValue}' } },
            },
          ],
        }),
      ),
    });
    const integrationSecrets = iam.ManagedPolicy.fromManagedPolicyArn(
      this,
      'IntegrationSecrets',
      integrationSecretsPolicy.ref,
    );

    const slackSecretPolicy = new iam.ManagedPolicy(this, 'SlackSecretPolicy', {
      description: sub("${AWS::StackName}: read the Slack app's secret, tagged jit-access-slack=true"),
      statements: [
        new iam.PolicyStatement({
          sid: 'ReadTaggedSlackSecret',
          actions: ['secretsmanager:GetSecretValue'],
          resources: [sub('arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:*')],
          conditions: { StringEquals: { 'secretsmanager:ResourceTag/jit-access-slack': 'true' } },
        }),
      ],
    });

    // Only with SlackEnabled "true": the policy exists, and the roles hold it (an Fn::If in their
    // ManagedPolicyArns, which the L2 role cannot express but takes as an ARN token).
    (slackSecretPolicy.node.defaultChild as iam.CfnManagedPolicy).cfnOptions.condition = c.slackOn;
    const slackSecretsIfOn = iam.ManagedPolicy.fromManagedPolicyArn(
      this,
      'SlackSecretsIfOn',
      Token.asString(Fn.conditionIf(c.slackOn.logicalId, slackSecretPolicy.managedPolicyArn, Aws.NO_VALUE)),
    );

    const tableAndIndexes = [table.tableArn, `${table.tableArn}/index/*`];
    const auditAppendOnly = new iam.PolicyStatement({
      sid: 'AuditAppendOnly',
      effect: iam.Effect.DENY,
      actions: ['dynamodb:UpdateItem', 'dynamodb:DeleteItem', 'dynamodb:BatchWriteItem'],
      resources: [table.tableArn],
      conditions: { 'ForAnyValue:StringLike': { 'dynamodb:LeadingKeys': ['AUDIT#*'] } },
    });
    const publishEvents = new iam.PolicyStatement({
      sid: 'PublishEvents',
      actions: ['events:PutEvents'],
      resources: [eventBus.eventBusArn],
    });
    const ownLogs = (group: logs.LogGroup) =>
      new iam.PolicyStatement({
        sid: 'OwnLogs',
        actions: ['logs:CreateLogStream', 'logs:PutLogEvents'],
        resources: [group.logGroupArn],
      });
    const grantTableActions = [
      'dynamodb:GetItem',
      'dynamodb:BatchGetItem', // the synced-membership check (sync status + membership)
      'dynamodb:PutItem',
      'dynamodb:UpdateItem',
      'dynamodb:DeleteItem', // a lease is deleted when its last grant ends
      'dynamodb:Query',
    ];
    const expirySchedules = `arn:${Aws.PARTITION}:scheduler:${Aws.REGION}:${Aws.ACCOUNT_ID}:schedule/${scheduleGroup.ref}/*`;
    const functionRole = (id: string, name: FunctionName, managed: iam.IManagedPolicy[], statements: iam.PolicyStatement[]) =>
      new iam.Role(this, id, {
        description: sub(`\${AWS::StackName}: the ${name} function`),
        assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
        managedPolicies: managed,
        inlinePolicies: { [name]: new iam.PolicyDocument({ statements }) },
      });

    const syncRole = functionRole('SyncRole', 'sync', [integrationSecrets], [
      auditAppendOnly,
      new iam.PolicyStatement({
        sid: 'Directory',
        actions: [
          'dynamodb:GetItem',
          'dynamodb:BatchGetItem', // users by id: the incremental sync's named users, the fan-out's parts
          'dynamodb:PutItem',
          'dynamodb:UpdateItem',
          'dynamodb:DeleteItem',
          'dynamodb:BatchWriteItem',
          'dynamodb:Query',
        ],
        resources: tableAndIndexes,
      }),
      publishEvents,
      // The fanned-out sync sends its parts, and (as the queue's event source mapping, which acts
      // with this role) receives and deletes them.
      new iam.PolicyStatement({
        sid: 'SyncParts',
        actions: [
          'sqs:SendMessage',
          'sqs:ReceiveMessage',
          'sqs:DeleteMessage',
          'sqs:ChangeMessageVisibility',
          'sqs:GetQueueAttributes',
        ],
        resources: [syncParts.queueArn],
      }),
      ownLogs(logGroups.sync),
    ]);

    const revokeRole = functionRole('RevokeRole', 'revoke', [integrationSecrets, slackSecretsIfOn], [
      auditAppendOnly,
      new iam.PolicyStatement({ sid: 'Grants', actions: grantTableActions, resources: tableAndIndexes }),
      new iam.PolicyStatement({
        sid: 'ExpirySchedules',
        actions: ['scheduler:DeleteSchedule'],
        resources: [expirySchedules],
      }),
      publishEvents,
      // Lambda's on-failure destination (below) sends with this role.
      new iam.PolicyStatement({ sid: 'FailedInvocations', actions: ['sqs:SendMessage'], resources: [dlq.queueArn] }),
      ownLogs(logGroups.revoke),
    ]);

    // ===========================================================================================
    // Functions: built by cargo-lambda from the workspace (`cargo lambda build --release --arm64
    // --bin <name>`), as `sam build` does. Configuration the template sets in Globals first.
    // ===========================================================================================
    const commonEnvironment: Record<string, string> = {
      TABLE_NAME: table.tableName,
      EVENT_BUS_NAME: eventBus.eventBusName,
      SCHEDULE_GROUP: scheduleGroup.ref,
      SECRET_TAG_KEY: p.SecretTagKey.valueAsString,
      SECRET_TAG_VALUE: p.SecretTagValue.valueAsString,
      JUMPCLOUD_API_URL: p.JumpCloudApiUrl.valueAsString,
      JUMPCLOUD_MAX_CONCURRENCY: p.JumpCloudMaxConcurrency.valueAsString,
      JUMPCLOUD_REQUESTS_PER_SECOND: p.JumpCloudRequestsPerSecond.valueAsString,
      REQUESTABLE_GROUPS: p.RequestableGroups.valueAsString,
      MIN_GRANT_DURATION: p.MinGrantDuration.valueAsString,
      MAX_GRANT_DURATION: p.MaxGrantDuration.valueAsString,
      MANAGER_ATTRIBUTE: p.ManagerAttribute.valueAsString,
      INCLUDE_SUSPENDED_USERS: p.IncludeSuspendedUsers.valueAsString,
      ADMIN_PRINCIPALS: p.AdminPrincipals.valueAsString,
      ADMIN_GROUP: p.AdminGroup.valueAsString,
      IDENTITY_CLAIM: p.IdentityClaim.valueAsString,
      API_ID: api.ref,
      SLACK_ENABLED: p.SlackEnabled.valueAsString,
      SLACK_API_URL: p.SlackApiUrl.valueAsString,
      // The Slack app's secret carries this tag with the value "true" (SlackSecretPolicy).
      SLACK_SECRET_TAG_KEY: 'jit-access-slack',
    };
    const manifestPath = path.join(props.repositoryRoot, 'Cargo.toml');
    const rustFunction = (id: string, name: FunctionName, fnProps: Omit<Partial<lambda.FunctionProps>, 'runtime'> & {
      description: string;
      memorySize: number;
      timeout: Duration;
      role: iam.IRole;
      reservedConcurrentExecutions: number;
    }) =>
      new RustFunction(this, id, {
        manifestPath,
        binaryName: name,
        runtime: 'provided.al2023',
        architecture: lambda.Architecture.ARM_64,
        functionName: sub(`\${AWS::StackName}-${name}`),
        logGroup: logGroups[name],
        ...fnProps,
        environment: { ...commonEnvironment, ...(fnProps.environment ?? {}) },
      });

    const syncFunction = rustFunction('SyncFunction', 'sync', {
      description: 'Pulls JumpCloud users, groups and memberships into DynamoDB; reconciles grants.',
      role: syncRole,
      memorySize: 1024,
      timeout: Duration.seconds(600),
      reservedConcurrentExecutions: p.SyncReservedConcurrency.valueAsNumber,
      environment: {
        SYNC_QUEUE_URL: syncParts.queueUrl,
        FANOUT_ABOVE_USERS: p.FanOutAboveUsers.valueAsString,
      },
      // Scheduled runs are asynchronous: no Lambda retries, the next run comes anyway.
      retryAttempts: 0,
    });
    // L1: the L2 SqsEventSource would add its own grant to the role; SyncParts above is the one.
    new lambda.CfnEventSourceMapping(this, 'SyncPartsEventSourceMapping', {
      eventSourceArn: syncParts.queueArn,
      functionName: syncFunction.functionName,
      batchSize: 1,
      functionResponseTypes: ['ReportBatchItemFailures'],
      scalingConfig: { maximumConcurrency: p.SyncWorkers.valueAsNumber },
    });

    const revokeFunction = rustFunction('RevokeFunction', 'revoke', {
      description: 'Ends grants (expiry schedule, sweep, DELETE /grants/{id}); removes memberships.',
      role: revokeRole,
      memorySize: 512,
      timeout: Duration.seconds(60),
      reservedConcurrentExecutions: p.RevokeReservedConcurrency.valueAsNumber,
      retryAttempts: 2,
      maxEventAge: Duration.seconds(3600),
      onFailure: new QueueArnDestination(dlq),
    });

    // Assumed by EventBridge Scheduler for the sweep and for every grant's expiry schedule; only
    // this account's schedules, in the expiry group or the default group (the sweep's), may.
    const schedulerRole = new iam.Role(this, 'SchedulerRole', {
      description: sub('${AWS::StackName}: EventBridge Scheduler invokes revoke'),
      assumedBy: new iam.ServicePrincipal('scheduler.amazonaws.com').withConditions({
        StringEquals: { 'aws:SourceAccount': Aws.ACCOUNT_ID },
        ArnLike: {
          'aws:SourceArn': [
            expirySchedules,
            sub('arn:${AWS::Partition}:scheduler:${AWS::Region}:${AWS::AccountId}:schedule/default/*'),
          ],
        },
      }),
      inlinePolicies: {
        'invoke-revoke': new iam.PolicyDocument({
          statements: [
            new iam.PolicyStatement({
              sid: 'InvokeRevoke',
              actions: ['lambda:InvokeFunction'],
              resources: [revokeFunction.functionArn],
            }),
            new iam.PolicyStatement({ sid: 'DeadLetters', actions: ['sqs:SendMessage'], resources: [dlq.queueArn] }),
          ],
        }),
      },
    });

    const grantRole = functionRole('GrantRole', 'grant', [integrationSecrets, slackSecretsIfOn], [
      auditAppendOnly,
      new iam.PolicyStatement({ sid: 'Grants', actions: grantTableActions, resources: tableAndIndexes }),
      new iam.PolicyStatement({
        sid: 'ExpirySchedules',
        actions: ['scheduler:CreateSchedule', 'scheduler:DeleteSchedule'],
        resources: [expirySchedules],
      }),
      new iam.PolicyStatement({
        sid: 'PassSchedulerRole',
        actions: ['iam:PassRole'],
        resources: [schedulerRole.roleArn],
        conditions: { StringEquals: { 'iam:PassedToService': 'scheduler.amazonaws.com' } },
      }),
      publishEvents,
      ownLogs(logGroups.grant),
    ]);

    const grantFunction = rustFunction('GrantFunction', 'grant', {
      description: 'Validates and records grants, adds the membership, schedules its expiry.',
      role: grantRole,
      memorySize: 512,
      timeout: Duration.seconds(30),
      reservedConcurrentExecutions: p.GrantReservedConcurrency.valueAsNumber,
      environment: {
        REVOKE_FUNCTION_ARN: revokeFunction.functionArn,
        SCHEDULER_ROLE_ARN: schedulerRole.roleArn,
        SCHEDULE_DLQ_ARN: dlq.queueArn,
        JUMPCLOUD_RETRY_BUDGET: '20s',
        OIDC_ISSUER: Token.asString(Fn.conditionIf(c.useJwt.logicalId, p.JwtIssuer.valueAsString, '')),
        OIDC_CLIENT_ID: Token.asString(
          Fn.conditionIf(c.useJwt.logicalId, Fn.select(0, Fn.split(',', p.JwtAudience.valueAsString)), ''),
        ),
      },
    });

    this.functions = { sync: syncFunction, grant: grantFunction, revoke: revokeFunction };
    this.roles = { sync: syncRole, grant: grantRole, revoke: revokeRole, scheduler: schedulerRole };

    // ===========================================================================================
    // Schedules
    // ===========================================================================================

    // sync: an EventBridge rule, so that sync receives the classic scheduled event. The L2 target
    // adds the function's permission for this rule and the queue's policy for its dead letters.
    const syncScheduleRule = new events.Rule(this, 'SyncScheduleRule', {
      description: sub('${AWS::StackName}: sync every integration'),
      schedule: events.Schedule.expression(p.SyncScheduleExpression.valueAsString),
      targets: [
        new targets.LambdaFunction(syncFunction, {
          retryAttempts: 2,
          maxEventAge: Duration.seconds(600),
          deadLetterQueue: dlq,
        }),
      ],
    });
    // The template's target id (the L2 numbers its targets Target0, Target1...).
    (syncScheduleRule.node.defaultChild as events.CfnRule).addPropertyOverride('Targets.0.Id', 'sync');

    // The incremental sync: every minute, the constant input sync recognizes (events/sync-incremental.json).
    const incrementalSyncRule = new events.Rule(this, 'IncrementalSyncScheduleRule', {
      description: sub('${AWS::StackName}: incremental sync from Directory Insights'),
      schedule: events.Schedule.expression(p.IncrementalSyncScheduleExpression.valueAsString),
      targets: [
        new targets.LambdaFunction(syncFunction, {
          event: events.RuleTargetInput.fromObject({ source: 'jit.sync', 'detail-type': 'Incremental Sync', detail: {} }),
          retryAttempts: 0,
          maxEventAge: Duration.seconds(60),
          deadLetterQueue: dlq,
        }),
      ],
    });
    const incrementalRule = incrementalSyncRule.node.defaultChild as events.CfnRule;
    incrementalRule.addPropertyOverride('Targets.0.Id', 'sync-incremental');
    // The template's text, byte for byte (the L2 writes the same JSON without spaces).
    incrementalRule.addPropertyOverride('Targets.0.Input', '{"source": "jit.sync", "detail-type": "Incremental Sync", "detail": {}}');

    // The sweep, in the default schedule group (out of reach of the functions' scheduler
    // permissions). L1: the L2 target would grant SchedulerRole again in a policy of its own; the
    // role's statements above are the one place its permissions live.
    new scheduler.CfnSchedule(this, 'SweepSchedule', {
      description: sub('${AWS::StackName}: revoke every expired grant'),
      scheduleExpression: p.SweepScheduleExpression.valueAsString,
      flexibleTimeWindow: { mode: 'OFF' },
      state: 'ENABLED',
      target: {
        arn: revokeFunction.functionArn,
        roleArn: schedulerRole.roleArn,
        input: '{"source": "jit-access.sweep", "detail-type": "Sweep Expired Grants", "detail": {}}',
        retryPolicy: { maximumRetryAttempts: 2, maximumEventAgeInSeconds: 300 },
        deadLetterConfig: { arn: dlq.queueArn },
      },
    });

    // ===========================================================================================
    // HTTP API. L1, as the template's plain ApiGatewayV2 resources: every route's authorization is
    // chosen by the ApiAuthorization parameter at deploy time (an L2 authorizer is chosen in code).
    // ===========================================================================================
    new apigw.CfnStage(this, 'HttpApiStage', {
      apiId: api.ref,
      stageName: '$default',
      autoDeploy: true,
      defaultRouteSettings: { throttlingBurstLimit: 50, throttlingRateLimit: 20 },
      // The one route without IAM/JWT authorization is held to less (unsigned traffic).
      routeSettings: {
        'POST /slack/interactions': { ThrottlingBurstLimit: 10, ThrottlingRateLimit: 5 },
      },
      accessLogSettings: {
        destinationArn: apiAccessLogGroup.logGroupArn,
        format:
          '{"requestId":"$context.requestId","ip":"$context.identity.sourceIp", ' +
          '"requestTime":"$context.requestTime","routeKey":"$context.routeKey", ' +
          '"status":"$context.status","responseLength":"$context.responseLength", ' +
          '"userArn":"$context.identity.userArn","jwtSubject":"$context.authorizer.claims.sub", ' +
          '"integrationError":"$context.integrationErrorMessage"}',
      },
    });

    const jwtAuthorizer = new apigw.CfnAuthorizer(this, 'JwtAuthorizer', {
      apiId: api.ref,
      name: 'jwt',
      authorizerType: 'JWT',
      identitySource: ['$request.header.Authorization'],
      jwtConfiguration: {
        issuer: p.JwtIssuer.valueAsString,
        audience: Fn.split(',', p.JwtAudience.valueAsString),
      },
    });
    jwtAuthorizer.cfnOptions.condition = c.useJwt;

    const integrations: Record<FunctionName, apigw.CfnIntegration> = {
      sync: this.integration('SyncIntegration', api, syncFunction),
      grant: this.integration('GrantIntegration', api, grantFunction),
      revoke: this.integration('RevokeIntegration', api, revokeFunction),
    };

    // Each route, and API Gateway's permission to invoke its function through that route only.
    for (const route of ROUTES) {
      const cfnRoute = new apigw.CfnRoute(this, route.id, {
        apiId: api.ref,
        routeKey: route.routeKey,
        target: `integrations/${integrations[route.target].ref}`,
        ...(route.access === 'public'
          ? { authorizationType: 'NONE' }
          : {
              authorizationType: Token.asString(Fn.conditionIf(c.useJwt.logicalId, 'JWT', 'AWS_IAM')),
              authorizerId: Token.asString(Fn.conditionIf(c.useJwt.logicalId, jwtAuthorizer.ref, Aws.NO_VALUE)),
            }),
      });
      const permission = new lambda.CfnPermission(this, route.id.replace(/Route$/, 'Permission'), {
        action: 'lambda:InvokeFunction',
        functionName: this.functions[route.target].functionName,
        principal: 'apigateway.amazonaws.com',
        sourceArn: `arn:${Aws.PARTITION}:execute-api:${Aws.REGION}:${Aws.ACCOUNT_ID}:${api.ref}/*/${routeArnSuffix(route.routeKey)}`,
      });
      if (route.jwtOnly) {
        cfnRoute.cfnOptions.condition = c.useJwt;
        permission.cfnOptions.condition = c.useJwt;
      }
    }

    // ===========================================================================================
    // Alarms (notify AlarmTopicArn when given) and the metric filters they count.
    // ===========================================================================================
    const namespace = sub('JitAccess/${AWS::StackName}');
    const metricFilter = (id: string, group: logs.ILogGroup, event: string, metricName: string) =>
      new logs.MetricFilter(this, id, {
        logGroup: group,
        filterPattern: logs.FilterPattern.literal(`{ $.event = "${event}" }`),
        metricNamespace: namespace,
        metricName,
        metricValue: '1',
        unit: cloudwatch.Unit.COUNT,
      });
    metricFilter('RevokeRevocationFailuresMetricFilter', logGroups.revoke, 'revocation_failed', 'RevocationFailures');
    metricFilter('SyncRevocationFailuresMetricFilter', logGroups.sync, 'revocation_failed', 'RevocationFailures');
    metricFilter('SyncIntegrationConflictsMetricFilter', logGroups.sync, 'integration_conflict', 'IntegrationConflicts');
    metricFilter('GrantIntegrationConflictsMetricFilter', logGroups.grant, 'integration_conflict', 'IntegrationConflicts');
    metricFilter('RevokeIntegrationConflictsMetricFilter', logGroups.revoke, 'integration_conflict', 'IntegrationConflicts');
    metricFilter('GrantSlackFailuresMetricFilter', logGroups.grant, 'slack_failed', 'SlackFailures');
    metricFilter('RevokeSlackFailuresMetricFilter', logGroups.revoke, 'slack_failed', 'SlackFailures');
    metricFilter('SlackSignatureRefusalsMetricFilter', logGroups.grant, 'slack_signature_refused', 'SlackSignatureRefusals');
    metricFilter('SweepHeartbeatMetricFilter', logGroups.revoke, 'sweep_heartbeat', 'SweepRuns');

    // L1: the actions exist only under HasAlarmTopic (an Fn::If), which the L2 alarm's actions
    // cannot express.
    const alarmActions = Token.asList(
      Fn.conditionIf(c.hasAlarmTopic.logicalId, [p.AlarmTopicArn.valueAsString], Aws.NO_VALUE),
    );
    const alarm = (id: string, props: Omit<cloudwatch.CfnAlarmProps, 'evaluationPeriods' | 'alarmActions' | 'okActions'>) =>
      new cloudwatch.CfnAlarm(this, id, { evaluationPeriods: 1, alarmActions, okActions: alarmActions, ...props });
    const functionDimension = (fn: lambda.IFunction) => [{ name: 'FunctionName', value: fn.functionName }];

    alarm('IntegrationConflictAlarm', {
      alarmDescription: sub(
        '${AWS::StackName}: two secrets claim one integration name; both are refused until one is untagged (its grants cannot be revoked meanwhile)',
      ),
      namespace,
      metricName: 'IntegrationConflicts',
      statistic: 'Sum',
      period: 300,
      threshold: 0,
      comparisonOperator: 'GreaterThanThreshold',
      treatMissingData: 'notBreaching',
    });
    // Slack approvals' alarms, with SlackEnabled "true" only.
    alarm('SlackFailuresAlarm', {
      alarmDescription: sub(
        '${AWS::StackName}: a Slack call failed (a request or extension not posted, or a message not updated); grants and decisions go on without Slack',
      ),
      namespace,
      metricName: 'SlackFailures',
      statistic: 'Sum',
      period: 300,
      threshold: 0,
      comparisonOperator: 'GreaterThanThreshold',
      treatMissingData: 'notBreaching',
    }).cfnOptions.condition = c.slackOn;
    alarm('SlackSignatureRefusalsAlarm', {
      alarmDescription: sub(
        '${AWS::StackName}: more than 5 Slack interaction requests refused for their signature in 5 minutes (probing, or the signing secret out of date)',
      ),
      namespace,
      metricName: 'SlackSignatureRefusals',
      statistic: 'Sum',
      period: 300,
      threshold: 5,
      comparisonOperator: 'GreaterThanThreshold',
      treatMissingData: 'notBreaching',
    }).cfnOptions.condition = c.slackOn;
    alarm('SweepStoppedAlarm', {
      alarmDescription: sub(
        '${AWS::StackName}: the sweep has not run for 5 minutes; a grant whose expiry schedule is lost would not end',
      ),
      namespace,
      metricName: 'SweepRuns',
      statistic: 'Sum',
      period: 300,
      threshold: 1,
      comparisonOperator: 'LessThanThreshold',
      treatMissingData: 'breaching',
    });
    alarm('RevocationFailuresAlarm', {
      alarmDescription: sub('${AWS::StackName}: a revocation failed; a membership may outlive its grant'),
      namespace,
      metricName: 'RevocationFailures',
      statistic: 'Sum',
      period: 60,
      threshold: 0,
      comparisonOperator: 'GreaterThanThreshold',
      treatMissingData: 'notBreaching',
    });
    alarm('RevokeErrorsAlarm', {
      alarmDescription: sub('${AWS::StackName}: the revoke function failed (error, timeout or crash)'),
      namespace: 'AWS/Lambda',
      metricName: 'Errors',
      dimensions: functionDimension(revokeFunction),
      statistic: 'Sum',
      period: 300,
      threshold: 0,
      comparisonOperator: 'GreaterThanThreshold',
      treatMissingData: 'notBreaching',
    });
    alarm('SyncErrorsAlarm', {
      alarmDescription: sub('${AWS::StackName}: sync failed for every integration'),
      namespace: 'AWS/Lambda',
      metricName: 'Errors',
      dimensions: functionDimension(syncFunction),
      statistic: 'Sum',
      period: 900,
      threshold: 0,
      comparisonOperator: 'GreaterThanThreshold',
      treatMissingData: 'notBreaching',
    });
    alarm('DeadLetterQueueAlarm', {
      alarmDescription: sub(
        '${AWS::StackName}: a schedule delivery or a revoke invocation failed (dead-letter queue not empty)',
      ),
      namespace: 'AWS/SQS',
      metricName: 'ApproximateNumberOfMessagesVisible',
      dimensions: [{ name: 'QueueName', value: dlq.queueName }],
      statistic: 'Maximum',
      period: 300,
      threshold: 0,
      comparisonOperator: 'GreaterThanThreshold',
      treatMissingData: 'notBreaching',
    });

    alarm('SyncPartsDeadLetterAlarm', {
      alarmDescription: sub(
        "${AWS::StackName}: a fanned-out sync's part failed for good (sync parts dead-letter queue not empty)",
      ),
      namespace: 'AWS/SQS',
      metricName: 'ApproximateNumberOfMessagesVisible',
      dimensions: [{ name: 'QueueName', value: syncPartsDlq.queueName }],
      statistic: 'Maximum',
      period: 300,
      threshold: 0,
      comparisonOperator: 'GreaterThanThreshold',
      treatMissingData: 'notBreaching',
    });

    // ===========================================================================================
    // Notifications (CreateNotificationTopic "true"). L1 throughout: every resource exists only
    // under a condition, and the L2 topic target would add a topic policy of its own.
    // ===========================================================================================
    // Spelt out, as in the template (the rule is named): its attribute would make a cycle.
    const notificationRuleArn = `arn:${Aws.PARTITION}:events:${Aws.REGION}:${Aws.ACCOUNT_ID}:rule/${eventBus.eventBusName}/${stackName}-notify`;
    const notificationKey = new kms.CfnKey(this, 'NotificationKey', {
      description: sub('${AWS::StackName}: encrypts the notification topic'),
      enableKeyRotation: true,
      keyPolicy: {
        Version: '2012-10-17',
        Statement: [
          {
            Sid: 'AccountAdministers',
            Effect: 'Allow',
            Principal: { AWS: sub('arn:${AWS::Partition}:iam::${AWS::AccountId}:root') },
            Action: 'kms:*',
            Resource: '*',
          },
          {
            Sid: 'NotificationRuleEncrypts',
            Effect: 'Allow',
            Principal: { Service: 'events.amazonaws.com' },
            Action: ['kms:GenerateDataKey*', 'kms:Decrypt'],
            Resource: '*',
            Condition: { ArnEquals: { 'aws:SourceArn': notificationRuleArn } },
          },
        ],
      },
    });
    notificationKey.cfnOptions.condition = c.hasNotificationTopic;

    const notificationTopic = new sns.CfnTopic(this, 'NotificationTopic', {
      displayName: 'jit-access',
      kmsMasterKeyId: notificationKey.attrArn,
    });
    notificationTopic.cfnOptions.condition = c.hasNotificationTopic;

    const notificationRule = new events.CfnRule(this, 'NotificationRule', {
      name: sub('${AWS::StackName}-notify'),
      description: sub('${AWS::StackName}: request and approval events to the notification topic'),
      eventBusName: eventBus.eventBusName,
      state: 'ENABLED',
      eventPattern: { source: ['jit-access'], 'detail-type': NOTIFIED_EVENTS },
      // No Input: subscribers receive the event as the bus has it.
      targets: [{ id: 'notification-topic', arn: notificationTopic.ref }],
    });
    notificationRule.cfnOptions.condition = c.hasNotificationTopic;

    const notificationTopicPolicy = new sns.CfnTopicPolicy(this, 'NotificationTopicPolicy', {
      topics: [notificationTopic.ref],
      policyDocument: {
        Version: '2012-10-17',
        Statement: [
          {
            Sid: 'NotificationRulePublishes',
            Effect: 'Allow',
            Principal: { Service: 'events.amazonaws.com' },
            Action: 'sns:Publish',
            Resource: notificationTopic.ref,
            Condition: { ArnEquals: { 'aws:SourceArn': notificationRule.attrArn } },
          },
        ],
      },
    });
    notificationTopicPolicy.cfnOptions.condition = c.hasNotificationTopic;

    const subscription = new sns.CfnSubscription(this, 'NotificationEmailSubscription', {
      topicArn: notificationTopic.ref,
      protocol: 'email',
      endpoint: p.NotificationEmail.valueAsString,
    });
    subscription.cfnOptions.condition = c.hasNotificationEmail;

    // ===========================================================================================
    // Outputs: the template's, by the same names.
    // ===========================================================================================
    const output = (id: string, value: string, description?: string, condition?: typeof c.useJwt) =>
      new CfnOutput(this, id, { value, description, condition });
    output('ApiUrl', api.attrApiEndpoint, 'Base URL of the HTTP API (sign requests with SigV4, service execute-api).');
    output(
      'SlackInteractivityUrl',
      `${api.attrApiEndpoint}/slack/interactions`,
      "The Slack app's Interactivity Request URL (Slack approvals, optional).",
    );
    output(
      'PortalUrl',
      `${api.attrApiEndpoint}/`,
      'The portal, and its sign-in redirect URI: register exactly this (final slash included) in the OIDC application (README, "Portal").',
      c.useJwt,
    );
    output('ApiId', api.ref, "The HTTP API's id (for execute-api:Invoke policies).");
    output('TableName', table.tableName, 'The DynamoDB table (TABLE_NAME).');
    output('EventBusName', eventBus.eventBusName, 'The event bus the functions publish to (EVENT_BUS_NAME).');
    output(
      'ScheduleGroupName',
      scheduleGroup.ref,
      "EventBridge Scheduler group of the grants' expiry schedules (SCHEDULE_GROUP).",
    );
    output('SyncFunctionName', syncFunction.functionName);
    output('GrantFunctionName', grantFunction.functionName);
    output('RevokeFunctionName', revokeFunction.functionName);
    output(
      'RevokeFunctionArn',
      revokeFunction.functionArn,
      "The expiry schedules' target (REVOKE_FUNCTION_ARN, for `jitctl grant`).",
    );
    output(
      'SchedulerRoleArn',
      schedulerRole.roleArn,
      'The role EventBridge Scheduler assumes to invoke revoke (SCHEDULER_ROLE_ARN).',
    );
    output('DeadLetterQueueUrl', dlq.queueUrl, 'Failed schedule deliveries and revoke invocations.');
    output(
      'DeadLetterQueueArn',
      dlq.queueArn,
      "The expiry schedules' dead-letter queue (SCHEDULE_DLQ_ARN, for `jitctl grant`).",
    );
    output(
      'NotificationTopicArn',
      notificationTopic.ref,
      'The topic of request and approval events (CreateNotificationTopic "true"); subscribe to it.',
      c.hasNotificationTopic,
    );
  }

  private integration(id: string, api: apigw.CfnApi, fn: lambda.IFunction): apigw.CfnIntegration {
    return new apigw.CfnIntegration(this, id, {
      apiId: api.ref,
      integrationType: 'AWS_PROXY',
      integrationUri: fn.functionArn,
      payloadFormatVersion: '2.0',
      timeoutInMillis: 30000,
    });
  }
}
