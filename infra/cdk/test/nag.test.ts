// cdk-nag's AwsSolutions pack and CDK's built-in template validation over the app, as `cdk synth`
// runs them: no finding stands unacknowledged, and every acknowledgement (lib/nag.ts) still matches
// a finding on each construct it names, and says why.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import type { JitAccessStack } from '../lib/jit-access-stack';
import { nagAcknowledgements, templateValidationAcknowledgements } from '../lib/nag';
import { synthesize } from './helpers';

interface Report {
  pluginReports: {
    pluginName: string;
    violations: { ruleName: string; description: string; violatingConstructs: { constructPath: string }[] }[];
  }[];
}

/** Every finding, as `plugin rule @ construct path`. Synthesis throws on a cdk-nag finding: `thrown`. */
function findings(acknowledgeFindings: boolean): {
  found: string[];
  details: string[];
  thrown?: unknown;
  stack?: JitAccessStack;
} {
  let thrown: unknown;
  let outdir = '';
  let stack: JitAccessStack | undefined;
  // Synthesis prints its validation report; the test reads the report's file and prints what fails.
  const print = { log: console.log, error: console.error };
  console.log = console.error = () => undefined;
  try {
    stack = synthesize({ validation: true, acknowledgeFindings, onOutdir: (dir) => (outdir = dir) }).stack;
  } catch (e) {
    thrown = e;
  } finally {
    Object.assign(console, print);
  }
  const report = JSON.parse(fs.readFileSync(path.join(outdir, 'validation-report.json'), 'utf8')) as Report;
  const found: string[] = [];
  const details: string[] = [];
  for (const plugin of report.pluginReports) {
    for (const v of plugin.violations) {
      for (const c of v.violatingConstructs) {
        found.push(`${plugin.pluginName} ${v.ruleName} @ ${c.constructPath}`);
        details.push(`${plugin.pluginName} ${v.ruleName} @ ${c.constructPath}: ${v.description}`);
      }
    }
  }
  return { found: [...new Set(found)].sort(), details, thrown, stack };
}

const acknowledged = findings(true);
const unacknowledged = findings(false);

test('no finding stands unacknowledged (cdk-nag AwsSolutions, CDK template validation)', () => {
  assert.equal(acknowledged.thrown, undefined, `synthesis failed: ${String(acknowledged.thrown)}`);
  assert.deepEqual(acknowledged.details, [], acknowledged.details.join('\n'));
});

test('cdk-nag ran: without the acknowledgements, it reports and synthesis fails', () => {
  assert.ok(unacknowledged.thrown, 'synthesis went through with unacknowledged cdk-nag errors');
  assert.ok(unacknowledged.found.some((f) => f.startsWith('AwsSolutions AwsSolutions-')), unacknowledged.found.join('\n'));
  assert.ok(unacknowledged.found.some((f) => f.startsWith('CloudFormation Validate ')), unacknowledged.found.join('\n'));
});

test('every acknowledgement matches a finding on each construct it names, and says why', () => {
  const stack = acknowledged.stack!;
  const expected: string[] = [];
  for (const ack of nagAcknowledgements(stack)) {
    assert.ok(ack.reason.length >= 80, `${ack.id}: a few words are no reason: "${ack.reason}"`);
    for (const where of ack.paths) expected.push(`AwsSolutions ${ack.id} @ ${stack.node.id}/${where}`);
  }
  for (const ack of templateValidationAcknowledgements()) {
    assert.ok(ack.reason.length >= 80, `${ack.id}: a few words are no reason: "${ack.reason}"`);
    const rule = ack.id.replace(/^CloudFormation-Validate::/, '');
    for (const where of ack.paths) {
      expected.push(`CloudFormation Validate ${rule} @ ${[stack.node.id, where].filter(Boolean).join('/')}`);
    }
  }
  const stale = expected.filter((e) => !unacknowledged.found.includes(e));
  assert.deepEqual(stale, [], `acknowledged, but not found (remove them from lib/nag.ts):\n${stale.join('\n')}`);
  const missing = unacknowledged.found.filter((f) => !expected.includes(f));
  assert.deepEqual(missing, [], `found, not acknowledged:\n${missing.join('\n')}`);
});
