#!/usr/bin/env node
// The CDK app (cdk.json runs this). `npx cdk deploy` builds the three functions with the local
// cargo-lambda; JIT_CDK_SKIP_BUNDLING=1 synthesizes without building them (tests, CI).
import { createApp } from '../lib/app';

createApp({ skipBundling: process.env.JIT_CDK_SKIP_BUNDLING === '1' });
