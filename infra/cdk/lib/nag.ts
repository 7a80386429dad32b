// cdk-nag (AwsSolutions pack) and CDK's built-in template validation: each finding the stack keeps,
// with why. Each acknowledgement names one rule on one construct and, for IAM5, the exact wildcard,
// so that a new resource or a new wildcard is checked afresh. Fix the stack (and infra/template.yaml,
// which it mirrors) rather than adding a line here, unless the finding is a false positive or a
// deliberate choice whose reason fits below, as infra/checkov-skips.yaml does for checkov's scan of
// the SAM template. test/nag.test.ts fails on a finding not acknowledged here and on an
// acknowledgement that no longer matches a finding.
import { CfnElement, Validations } from 'aws-cdk-lib';
import { IConstruct } from 'constructs';
import type { JitAccessStack } from './jit-access-stack';
import { ROUTES } from './jit-access-stack';

export interface NagAcknowledgement {
  /** Paths below the stack of the constructs it applies to (each acknowledged on its own). */
  readonly paths: readonly string[];
  /** The rule, and for IAM5 the finding: `AwsSolutions-IAM5[Resource::...]`. */
  readonly id: string;
  readonly reason: string;
}

/** cdk-nag names a resource in a finding by its logical id: `<TableCD117FA1.Arn>`. */
function logicalId(construct: IConstruct): string {
  const element = (construct.node.defaultChild ?? construct) as CfnElement;
  return element.stack.getLogicalId(element);
}

export function nagAcknowledgements(stack: JitAccessStack): NagAcknowledgement[] {
  const authorized = ROUTES.filter((r) => r.access === 'authorized').map((r) => r.id);
  const portal = ROUTES.filter((r) => r.access === 'public' && r.jwtOnly).map((r) => r.id);
  const functionRoles = ['SyncRole', 'GrantRole', 'RevokeRole'];
  const tableIndexes = `Resource::<${logicalId(stack.table)}.Arn>/index/*`;
  const expirySchedules = `Resource::arn:<AWS::Partition>:scheduler:<AWS::Region>:<AWS::AccountId>:schedule/<ScheduleGroup>/*`;
  return [
    // --- API Gateway --------------------------------------------------------------------------
    {
      paths: authorized,
      id: 'AwsSolutions-APIG4',
      reason:
        'Authorized in both modes: AuthorizationType is Fn::If(UseJwt, JWT, AWS_IAM) (with the JWT authorizer in ' +
        'JWT mode), which the rule cannot resolve at synthesis and reports as an error. ' +
        'test/assertions.test.ts asserts both branches of every such route.',
    },
    {
      paths: ['SlackInteractionsRoute'],
      id: 'AwsSolutions-APIG4',
      reason:
        "Slack cannot sign with SigV4 or send our tokens: it signs each request with the Slack app's signing " +
        'secret, and grant verifies that signature (5-minute window, constant-time) before reading anything else; ' +
        'unsigned, stale or wrong requests get 401 and change nothing (handlers/slack.rs). Throttled to 5 ' +
        'requests a second at the stage so that unsigned traffic cannot take the grant function from people.',
    },
    {
      paths: portal,
      id: 'AwsSolutions-APIG4',
      reason:
        "JWT mode only (condition UseJwt): the portal's page, files and configuration (issuer, client id) must " +
        'load before anyone signs in, and a browser cannot sign with SigV4. They answer only what ships in the ' +
        'grant binary; every API route behind the page still needs a token.',
    },
    // --- IAM ------------------------------------------------------------------------------------
    ...functionRoles.map((role) => ({
      paths: [`${role}/Resource`],
      id: `AwsSolutions-IAM5[${tableIndexes}]`,
      reason:
        "The table's own indexes only (gsi1: lookups by email, group name, membership; gsi2: the sweep's due " +
        'grants), on the table the function uses; the same resource as in infra/template.yaml.',
    })),
    ...['GrantRole', 'RevokeRole'].map((role) => ({
      paths: [`${role}/Resource`],
      id: `AwsSolutions-IAM5[${expirySchedules}]`,
      reason:
        "The grants' expiry schedules: one per grant, named at run time, all in the stack's own schedule group " +
        '(the sweep lives in the default group, out of reach of this statement).',
    })),
    {
      paths: ['SlackSecretPolicy/Resource'],
      id: 'AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:secretsmanager:<AWS::Region>:<AWS::AccountId>:secret:*]',
      reason:
        "The Slack app's secret is created by the operator, under any name: GetSecretValue is allowed only on " +
        'secrets carrying the tag jit-access-slack=true (StringEquals on secretsmanager:ResourceTag), so the ' +
        'wildcard selects nothing by itself. The policy exists, and grant and revoke hold it, only with ' +
        'SlackEnabled "true" (condition SlackOn).',
    },
    // --- SQS --------------------------------------------------------------------------------------
    {
      paths: ['ScheduleDeadLetterQueue/Resource'],
      id: 'AwsSolutions-SQS3',
      reason:
        'It is the dead-letter queue: of the sync rule target, the sweep and every expiry schedule, and ' +
        "revoke's on-failure destination. Nothing consumes it but operators; DeadLetterQueueAlarm fires on " +
        'its first message and it keeps messages 14 days.',
    },
    {
      paths: ['ScheduleDeadLetterQueue/Resource'],
      id: 'AwsSolutions-SQS4',
      reason:
        'Its only senders are AWS services (EventBridge under the queue policy; Scheduler and Lambda with ' +
        'SchedulerRole and RevokeRole), which call SQS over TLS. A Deny on aws:SecureTransport=false would ' +
        'belong in infra/template.yaml first: this stack mirrors it statement by statement (test/equivalence.test.ts).',
    },
    {
      paths: ['SyncPartsQueue/Resource', 'SyncPartsDeadLetterQueue/Resource'],
      id: 'AwsSolutions-SQS4',
      reason:
        'Only the sync function sends and receives (SyncRole, over TLS, as every AWS SDK call), and SQS moves ' +
        'dead letters itself. A Deny on aws:SecureTransport=false would belong in infra/template.yaml first: this ' +
        'stack mirrors it statement by statement (test/equivalence.test.ts).',
    },
  ];
}

/** CDK's built-in template validation (cfn-lint rules): findings that are not problems here. */
export function templateValidationAcknowledgements(): NagAcknowledgement[] {
  return [
    {
      paths: [
        'IntegrationConflictAlarm',
        'SweepStoppedAlarm',
        'RevocationFailuresAlarm',
        'RevokeErrorsAlarm',
        'SyncErrorsAlarm',
        'DeadLetterQueueAlarm',
        'SyncPartsDeadLetterAlarm',
        'SlackFailuresAlarm',
        'SlackSignatureRefusalsAlarm',
      ],
      id: 'CloudFormation-Validate::W1030',
      reason:
        'The alarm actions are Fn::If(HasAlarmTopic, [AlarmTopicArn], AWS::NoValue): the empty default is never ' +
        'used as an action.',
    },
    {
      paths: ['IntegrationSecretsPolicy'],
      id: 'CloudFormation-Validate::E3510',
      reason:
        'A JSON string under Fn::Sub, which CloudFormation accepts: the condition key carries the SecretTagKey ' +
        'parameter (secretsmanager:ResourceTag/${SecretTagKey}) and a JSON key cannot be an intrinsic function.',
    },
    {
      paths: [''],
      id: 'CloudFormation-Validate::W2509',
      reason:
        'SecretTagKey and SecretTagValue are the tag that marks integration secrets (by default ' +
        'apono-connector-read=true), not secrets: they are in the functions\' environment and IAM policy anyway.',
    },
  ];
}

/** Records every acknowledgement on its constructs. */
export function suppressNagFindings(stack: JitAccessStack): void {
  for (const ack of [...nagAcknowledgements(stack), ...templateValidationAcknowledgements()]) {
    for (const path of ack.paths) {
      const construct = path === '' ? stack : stack.node.findChild(path.split('/')[0]);
      const target = path.includes('/') ? construct.node.findChild(path.split('/')[1]) : construct;
      Validations.of(target).acknowledge({ id: ack.id, reason: ack.reason });
    }
  }
}
