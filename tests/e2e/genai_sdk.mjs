// SPDX-License-Identifier: Apache-2.0
// Drives the official @google/genai SDK (pinned in package.json) against
// AiCarpool's edge for tests/e2e/test_sdks.py. Usage: node genai_sdk.mjs CASE
// [API_VERSION] with AICARPOOL_BASE_URL (the edge's root URL) and AICARPOOL_KEY
// in the environment; API_VERSION defaults to the SDK's own (v1beta), "v1"
// makes it call /v1/models/{model}:... Prints one JSON line: the answer text
// and the usageMetadata the SDK saw, or {"error": ...} with exit status 3 when
// the SDK raised an API error.
import { GoogleGenAI, ApiError } from '@google/genai';

const httpOptions = { baseUrl: process.env.AICARPOOL_BASE_URL, timeout: 60000 };
if (process.argv[3]) httpOptions.apiVersion = process.argv[3];
const ai = new GoogleGenAI({ apiKey: process.env.AICARPOOL_KEY, httpOptions });
const model = 'gemini-2.5-flash';
const contents = 'say hello';

const cases = {
    async plain() {
        const r = await ai.models.generateContent({ model, contents });
        return { text: r.text, finish_reason: r.candidates?.[0]?.finishReason ?? null, usage: r.usageMetadata ?? null };
    },
    async stream() {
        const stream = await ai.models.generateContentStream({ model, contents });
        let text = '';
        let usage = null;
        let chunks = 0;
        let finish_reason = null;
        for await (const chunk of stream) {
            chunks++;
            if (chunk.text) text += chunk.text;
            if (chunk.usageMetadata) usage = chunk.usageMetadata;
            if (chunk.candidates?.[0]?.finishReason) finish_reason = chunk.candidates[0].finishReason;
        }
        return { text, finish_reason, usage, chunks };
    },
};

const which = process.argv[2];
if (!cases[which]) {
    console.error(`unknown case ${which}; one of ${Object.keys(cases).join(', ')}`);
    process.exit(2);
}
try {
    console.log(JSON.stringify(await cases[which]()));
} catch (e) {
    if (e instanceof ApiError) {
        console.log(JSON.stringify({ error: { status: e.status ?? null, class: e.constructor.name, message: e.message } }));
        process.exit(3);
    }
    throw e;
}
