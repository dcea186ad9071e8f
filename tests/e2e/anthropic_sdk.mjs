// SPDX-License-Identifier: Apache-2.0
// Drives the official @anthropic-ai/sdk (pinned in package.json) against
// AiCarpool's edge for tests/e2e/test_sdks.py. Usage: node anthropic_sdk.mjs CASE
// with AICARPOOL_BASE_URL (the edge's root URL) and AICARPOOL_KEY in the
// environment. Prints one JSON line: the answer text and the usage the SDK saw,
// or {"error": ...} with exit status 3 when the SDK raised an API error.
import Anthropic from '@anthropic-ai/sdk';

const base = process.env.AICARPOOL_BASE_URL;
const key = process.env.AICARPOOL_KEY;
const model = 'claude-sonnet-4-6';
const messages = [{ role: 'user', content: 'say hello' }];

const cases = {
    // Plain call. SDK 1.x sends apiKey as Authorization: Bearer too.
    async plain() {
        const client = new Anthropic({ apiKey: key, baseURL: base, maxRetries: 0, timeout: 60000 });
        const msg = await client.messages.create({ model, max_tokens: 256, messages });
        return { id: msg.id, text: msg.content.map((b) => b.text).join(''), stop_reason: msg.stop_reason, usage: msg.usage };
    },
    // Streaming through the SDK's stream helper, key given as authToken.
    async stream() {
        const client = new Anthropic({ apiKey: null, authToken: key, baseURL: base, maxRetries: 0, timeout: 60000 });
        const stream = client.messages.stream({ model, max_tokens: 256, messages });
        let text = '';
        const events = [];
        stream.on('streamEvent', (ev) => events.push(ev.type));
        stream.on('text', (t) => { text += t; });
        const msg = await stream.finalMessage();
        return { id: msg.id, text, final_text: msg.content.map((b) => b.text).join(''), stop_reason: msg.stop_reason,
                 usage: msg.usage, events };
    },
    // A short max_tokens through a raw event stream (create with stream: true).
    async stream_raw_max_tokens() {
        const client = new Anthropic({ apiKey: key, baseURL: base, maxRetries: 0, timeout: 60000 });
        const stream = await client.messages.create({ model, max_tokens: 3, messages, stream: true });
        let text = '';
        const usage = {};
        let stop_reason = null;
        for await (const ev of stream) {
            if (ev.type === 'message_start') Object.assign(usage, ev.message.usage);
            if (ev.type === 'content_block_delta' && ev.delta.type === 'text_delta') text += ev.delta.text;
            if (ev.type === 'message_delta') { Object.assign(usage, ev.usage); stop_reason = ev.delta.stop_reason; }
        }
        return { text, stop_reason, usage };
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
    if (e instanceof Anthropic.APIError) {
        console.log(JSON.stringify({ error: { status: e.status ?? null, class: e.constructor.name, body: e.error ?? null } }));
        process.exit(3);
    }
    throw e;
}
