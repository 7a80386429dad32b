// Builds the app: the stack, and cdk-nag's AwsSolutions checks over it. Shared by bin/jit-access.ts
// (what `npx cdk synth|deploy` runs) and the tests, so that they check what is deployed.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { App, Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { JitAccessStack } from './jit-access-stack';
import { suppressNagFindings } from './nag';

export const DEFAULT_STACK_NAME = 'jit-access';

export interface CreateAppOptions {
  /**
   * Synthesize without building the functions (`cargo lambda build`): their code is a placeholder
   * asset. For tests and CI; a deployment bundles (environment variable JIT_CDK_SKIP_BUNDLING=1
   * sets this for `cdk synth`).
   */
  readonly skipBundling?: boolean;
  /** The CloudFormation stack name (context `stackName`, default jit-access). */
  readonly stackName?: string;
  /** Where the cloud assembly goes (tests: a temporary directory). */
  readonly outdir?: string;
  /** Record lib/nag.ts's acknowledgements (default true; test/nag.test.ts checks each still matches). */
  readonly acknowledgeFindings?: boolean;
}

/** The repository's root: the directory above this file holding Cargo.toml and infra/template.yaml. */
export function repositoryRoot(from: string = __dirname): string {
  for (let dir = from; ; dir = path.dirname(dir)) {
    if (fs.existsSync(path.join(dir, 'Cargo.toml')) && fs.existsSync(path.join(dir, 'infra', 'template.yaml'))) {
      return dir;
    }
    if (path.dirname(dir) === dir) throw new Error(`no repository root (Cargo.toml, infra/template.yaml) above ${from}`);
  }
}

export function createApp(options: CreateAppOptions = {}): { app: App; stack: JitAccessStack } {
  const app = new App({
    outdir: options.outdir,
    // After the CLI's context: `cdk synth` asks every stack to be bundled, whatever -c says.
    postCliContext: options.skipBundling ? { 'aws:cdk:bundling-stacks': [] } : undefined,
  });
  const stackName = options.stackName ?? app.node.tryGetContext('stackName') ?? DEFAULT_STACK_NAME;
  const stack = new JitAccessStack(app, 'JitAccess', {
    stackName,
    repositoryRoot: repositoryRoot(),
    description:
      'jit-access: just-in-time JumpCloud group access (the CDK app of infra/cdk; the same stack as infra/template.yaml).',
    // No AWS::CDK::Metadata resource: the stack holds what the SAM template holds, nothing more.
    analyticsReporting: false,
  });
  if (options.acknowledgeFindings ?? true) suppressNagFindings(stack);
  Validations.of(app).addPlugins(new AwsSolutionsChecks(app, { verbose: true }));
  return { app, stack };
}
