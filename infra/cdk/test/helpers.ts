// What the tests share: the CDK app synthesized as `cdk synth` would (cdk-nag included) but without
// building the functions, and the SAM template after SAM's transform.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after } from 'node:test';
import { createApp, repositoryRoot } from '../lib/app';
import type { JitAccessStack } from '../lib/jit-access-stack';
import type { Template } from './normalize';

export const ROOT = repositoryRoot();

export interface Synthesized {
  stack: JitAccessStack;
  template: Template;
  /** The cloud assembly's directory (validation-report.json is there). */
  outdir: string;
}

/**
 * Synthesizes the app into a temporary directory (removed after the file's tests). `validation`:
 * CDK's built-in template validation too (a few seconds); cdk-nag always runs. Bundling is skipped:
 * nothing is compiled, the functions' code is a placeholder asset, every other property is real.
 */
export function synthesize(
  options: { validation?: boolean; acknowledgeFindings?: boolean; onOutdir?: (outdir: string) => void } = {},
): Synthesized {
  const outdir = fs.mkdtempSync(path.join(os.tmpdir(), 'jit-cdk-'));
  after(() => fs.rmSync(outdir, { recursive: true, force: true }));
  options.onOutdir?.(outdir); // known even when synthesis throws (validation-report.json is there)
  const previous = process.env.CDK_VALIDATION;
  process.env.CDK_VALIDATION = options.validation ? 'true' : 'false';
  try {
    const { app, stack } = createApp({ skipBundling: true, outdir, acknowledgeFindings: options.acknowledgeFindings });
    const assembly = app.synth();
    const template = assembly.getStackByName(stack.stackName).template as Template;
    return { stack, template, outdir };
  } finally {
    if (previous === undefined) delete process.env.CDK_VALIDATION;
    else process.env.CDK_VALIDATION = previous;
  }
}

/**
 * infra/template.yaml after SAM's transform (test/sam_transform.py, with samtranslator from the
 * SAM venv: `source scripts/lib.sh && ensure_sam_venv`; SAM_PYTHON names another interpreter).
 */
export function samTemplate(): Template {
  const python = process.env.SAM_PYTHON ?? path.join(ROOT, '.venv-sam', 'bin', 'python');
  if (!fs.existsSync(python)) {
    throw new Error(
      `no ${python}: create the SAM venv (bash -c 'source scripts/lib.sh && ensure_sam_venv') or set SAM_PYTHON ` +
        'to a python with aws-sam-translator',
    );
  }
  const script = path.join(ROOT, 'infra', 'cdk', 'test', 'sam_transform.py');
  const out = execFileSync(python, [script, path.join(ROOT, 'infra', 'template.yaml')], {
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
  });
  return JSON.parse(out) as Template;
}
