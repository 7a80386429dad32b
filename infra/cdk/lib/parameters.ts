// The stack's parameters, conditions and rules: the same names, types, defaults, constraints and
// descriptions as infra/template.yaml (test/equivalence.test.ts fails when they drift). CloudFormation
// parameters rather than CDK context: one synthesized template serves every deployment, as the SAM
// one does, values are changed with `cdk deploy --parameters Name=value` without a new synthesis,
// and the two templates can be compared exactly.
import { CfnCondition, CfnParameter, CfnParameterProps, CfnRule, Fn } from 'aws-cdk-lib';
import { Construct } from 'constructs';

export const PARAMETERS = {
  SecretTagKey: {
    type: "String",
    default: "apono-connector-read",
    allowedPattern: "^[A-Za-z0-9 _.:/=+@-]{1,128}$",
    description:
      "Tag key that marks a Secrets Manager secret as a JumpCloud integration. The functions may read (GetSecretValue) only secrets carrying this tag with the value below.",
  },
  SecretTagValue: {
    type: "String",
    default: "true",
    allowedPattern: "^[A-Za-z0-9 _.:/=+@-]{1,256}$",
    description:
      "Tag value that marks an integration secret.",
  },
  JumpCloudApiUrl: {
    type: "String",
    default: "https://console.jumpcloud.com",
    allowedPattern: "^https://.+$",
    description:
      "JumpCloud's API (https only), e.g. https://console.eu.jumpcloud.com for the EU console.",
  },
  JumpCloudMaxConcurrency: {
    type: "Number",
    default: 8,
    minValue: 1,
    maxValue: 256,
    description:
      "JumpCloud requests in flight per integration (per function container).",
  },
  JumpCloudRequestsPerSecond: {
    type: "Number",
    default: 20,
    minValue: 1,
    maxValue: 10000,
    description:
      "JumpCloud request rate per integration (per function container).",
  },
  RequestableGroups: {
    type: "String",
    default: "*",
    description:
      "Comma-separated glob patterns on JumpCloud group names that may be requested (e.g. \"prod-*,eng-oncall\"). Dynamic groups are never requestable. Narrow this in production.",
  },
  MinGrantDuration: {
    type: "String",
    default: "1m",
    allowedPattern: "^(([0-9]+[dhms])+|P([0-9]+D)?(T([0-9]+H)?([0-9]+M)?([0-9]+S)?)?)$",
    description:
      "Shortest grant (90m, 2h, 1h30m, PT2H).",
  },
  MaxGrantDuration: {
    type: "String",
    default: "12h",
    allowedPattern: "^(([0-9]+[dhms])+|P([0-9]+D)?(T([0-9]+H)?([0-9]+M)?([0-9]+S)?)?)$",
    description:
      "Longest grant (90m, 2h, 1h30m, PT12H).",
  },
  ManagerAttribute: {
    type: "String",
    default: "manager",
    description:
      "JumpCloud custom attribute holding a user's manager (email or id).",
  },
  IncludeSuspendedUsers: {
    type: "String",
    default: "false",
    allowedValues: ["true", "false"],
    description:
      "Store suspended users (and their memberships) too.",
  },
  AdminPrincipals: {
    type: "String",
    default: "",
    description:
      "Comma-separated IAM ARN globs of admins (e.g. the deploying team's role, \"arn:aws:iam::123456789012:role/platform-team,arn:aws:sts::123456789012:assumed-role/AWSReservedSSO_Admin_*/*\"). Admins grant directly, run syncs and read every grant. Empty: no IAM caller is an admin, and while no access policy is applied nobody can grant.",
  },
  AdminGroup: {
    type: "String",
    default: "",
    description:
      "A JumpCloud group whose members are admins too (by name; empty for none).",
  },
  IdentityClaim: {
    type: "String",
    default: "email",
    allowedPattern: "^[A-Za-z0-9_:.-]+$",
    description:
      "The JWT claim that names the caller's JumpCloud user (JWT authorization).",
  },
  RevokeReservedConcurrency: {
    type: "Number",
    default: 5,
    minValue: 1,
    description:
      "Concurrent executions kept for revoke, whatever else runs in the account: expiries and the sweep are never starved by other functions (the account keeps at least 100 unreserved).",
  },
  SyncReservedConcurrency: {
    type: "Number",
    default: 6,
    minValue: 3,
    description:
      "Concurrent executions of sync at most (and kept for it): repeated POST /sync calls cannot run unbounded in parallel against JumpCloud's rate limit, which revoke needs too. Keep it above SyncWorkers, so that the schedules still run while a fanned-out sync's parts are worked.",
  },
  SyncWorkers: {
    type: "Number",
    default: 4,
    minValue: 2,
    maxValue: 1000,
    description:
      "Sync functions working a fanned-out full sync's parts at once (the SQS event source mapping's maximum concurrency; 2 is SQS's least). They share one JumpCloud rate budget whatever their number: more workers shorten a sync only while JumpCloud's rate is not the bound.",
  },
  FanOutAboveUsers: {
    type: "Number",
    default: 100000,
    minValue: 1,
    description:
      "Organizations with at least this many users are synced in full by parts over SQS (the fanned-out sync); smaller ones in one invocation.",
  },
  GrantReservedConcurrency: {
    type: "Number",
    default: 10,
    minValue: 1,
    description:
      "Concurrent executions kept for grant, and its most: people (break-glass included) can still get access while other functions use up the account's pool, and a flood of requests or a slow JumpCloud cannot pile up grant executions that eat the JumpCloud rate limit revoke needs. 10 serve the API's 20 requests a second at half a second each; raise it for heavier use.",
  },
  SyncScheduleExpression: {
    type: "String",
    default: "rate(15 minutes)",
    description:
      "How often `sync` pulls every integration (EventBridge rule schedule expression). Keep it longer than the sync function's timeout (10 minutes) so that runs do not overlap.",
  },
  IncrementalSyncScheduleExpression: {
    type: "String",
    default: "rate(1 minute)",
    description:
      "How often `sync` brings every integration up to date from JumpCloud's Directory Insights events (EventBridge rule schedule expression). An integration whose events cannot be followed (no cursor yet, a cursor past the 90-day retention) is synced in full instead.",
  },
  SweepScheduleExpression: {
    type: "String",
    default: "rate(1 minute)",
    description:
      "How often the sweep asks `revoke` to end every expired grant whose own schedule did not (EventBridge Scheduler expression).",
  },
  ApiAuthorization: {
    type: "String",
    default: "AWS_IAM",
    allowedValues: ["AWS_IAM", "JWT"],
    description:
      "AWS_IAM (default): every route needs a SigV4-signed request from a principal allowed execute-api:Invoke. JWT: every route needs a bearer token from JwtIssuer for JwtAudience, and the portal (GET /) signs people in there (README, \"Portal\").",
  },
  JwtIssuer: {
    type: "String",
    default: "",
    description:
      "JWT mode only: the token issuer URL, exactly as the tokens' `iss` claim (JumpCloud: https://oauth.id.jumpcloud.com/ with its final slash). The portal signs in there (OIDC_ISSUER).",
  },
  JwtAudience: {
    type: "String",
    default: "",
    description:
      "JWT mode only: comma-separated accepted audiences (the `aud` claim). The first is the portal's client id (OIDC_CLIENT_ID): JumpCloud's OIDC application's Client ID.",
  },
  SlackEnabled: {
    type: "String",
    default: "false",
    allowedValues: ["true", "false"],
    description:
      "\"true\": Slack approvals (README, \"Slack approvals\"), used once a Secrets Manager secret tagged jit-access-slack=true holds the app's bot_token and signing_secret. \"false\": nothing looks for that secret or calls Slack, the functions may not read it, and POST /slack/interactions answers 404.",
  },
  SlackApiUrl: {
    type: "String",
    default: "https://slack.com/api",
    allowedPattern: "^https://.+$",
    description: "Slack's Web API (https only), with SlackEnabled \"true\".",
  },
  AlarmTopicArn: {
    type: "String",
    default: "",
    allowedPattern: "^(arn:aws[a-z-]*:sns:[a-z0-9-]+:[0-9]{12}:.+)?$",
    description:
      "SNS topic ARN that alarms notify (failed revocations, dead letters). Empty for none.",
  },
  CreateNotificationTopic: {
    type: "String",
    default: "false",
    allowedValues: ["true", "false"],
    description:
      "\"true\": an SNS topic that receives the bus's request and approval events (Approval Requested, Request Approved, Request Denied, ...), each event as is, its `detail.notify` naming the people to tell. Subscribe to it (README, \"Notifications\"). Encrypted with a KMS key of its own (about 1 USD a month).",
  },
  NotificationEmail: {
    type: "String",
    default: "",
    allowedPattern: "^([^@\\s]+@[^@\\s]+)?$",
    description:
      "With CreateNotificationTopic \"true\": an email address subscribed to the topic (it receives a confirmation mail first). Empty for none.",
  },
  LogRetentionInDays: {
    type: "Number",
    // A string, as its AllowedValues (CfnParameter takes strings): cfn-lint reads 90 as outside ["90", ...].
    default: "90",
    allowedValues: ["1", "3", "5", "7", "14", "30", "60", "90", "120", "150", "180", "365", "400", "545", "731", "1096", "1827", "2192", "2557", "2922", "3288", "3653"],
    description:
      "Retention of the functions' and the API's log groups (the audit trail lives in DynamoDB).",
  },
} satisfies Record<string, CfnParameterProps>;

export type ParameterName = keyof typeof PARAMETERS;
export type Parameters = Record<ParameterName, CfnParameter>;

export interface Conditions {
  /** ApiAuthorization is JWT: routes take a JWT authorizer, and the portal's routes exist. */
  readonly useJwt: CfnCondition;
  readonly hasAlarmTopic: CfnCondition;
  readonly hasNotificationTopic: CfnCondition;
  readonly hasNotificationEmail: CfnCondition;
  /** SlackEnabled is "true": the Slack secret's policy and the Slack alarms exist. */
  readonly slackOn: CfnCondition;
}

/** The parameters, with the template's logical ids (direct children of the stack keep their id). */
export function defineParameters(scope: Construct): Parameters {
  const out: Partial<Parameters> = {};
  for (const [name, props] of Object.entries(PARAMETERS) as [ParameterName, CfnParameterProps][]) {
    out[name] = new CfnParameter(scope, name, props);
  }
  return out as Parameters;
}

export function defineConditions(scope: Construct, p: Parameters): Conditions {
  const useJwt = new CfnCondition(scope, 'UseJwt', {
    expression: Fn.conditionEquals(p.ApiAuthorization.valueAsString, 'JWT'),
  });
  const hasAlarmTopic = new CfnCondition(scope, 'HasAlarmTopic', {
    expression: Fn.conditionNot(Fn.conditionEquals(p.AlarmTopicArn.valueAsString, '')),
  });
  const hasNotificationTopic = new CfnCondition(scope, 'HasNotificationTopic', {
    expression: Fn.conditionEquals(p.CreateNotificationTopic.valueAsString, 'true'),
  });
  const slackOn = new CfnCondition(scope, 'SlackOn', {
    expression: Fn.conditionEquals(p.SlackEnabled.valueAsString, 'true'),
  });
  const hasNotificationEmail = new CfnCondition(scope, 'HasNotificationEmail', {
    expression: Fn.conditionAnd(
      hasNotificationTopic,
      Fn.conditionNot(Fn.conditionEquals(p.NotificationEmail.valueAsString, '')),
    ),
  });
  return { useJwt, hasAlarmTopic, hasNotificationTopic, hasNotificationEmail, slackOn };
}

/** Deploy-time checks of parameter combinations (CloudFormation rules), as in the SAM template. */
export function defineRules(scope: Construct, p: Parameters): void {
  new CfnRule(scope, 'JwtNeedsIssuerAndAudience', {
    ruleCondition: Fn.conditionEquals(p.ApiAuthorization.valueAsString, 'JWT'),
    assertions: [
      {
        assert: Fn.conditionNot(Fn.conditionEquals(p.JwtIssuer.valueAsString, '')),
        assertDescription: 'ApiAuthorization JWT needs JwtIssuer.',
      },
      {
        assert: Fn.conditionNot(Fn.conditionEquals(p.JwtAudience.valueAsString, '')),
        assertDescription: 'ApiAuthorization JWT needs JwtAudience.',
      },
    ],
  });
  new CfnRule(scope, 'NotificationEmailNeedsTopic', {
    ruleCondition: Fn.conditionNot(Fn.conditionEquals(p.NotificationEmail.valueAsString, '')),
    assertions: [
      {
        assert: Fn.conditionEquals(p.CreateNotificationTopic.valueAsString, 'true'),
        assertDescription: 'NotificationEmail needs CreateNotificationTopic "true".',
      },
    ],
  });
}
