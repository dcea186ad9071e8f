// SPDX-License-Identifier: Apache-2.0
// Drives the official openai SDK (pinned in package.json) against AiCarpool's
// edge for tests/e2e/test_sdks.py. Usage: node openai_sdk.mjs CASE with
// AICARPOOL_BASE_URL (the edge's root URL; the SDK gets BASE/v1) and
// AICARPOOL_KEY in the environment. Prints one JSON line: the answer text and
// the usage the SDK saw, or {"error": ...} with exit status 3 on an API error.
import OpenAI from 'openai';

const client = new OpenAI({ apiKey: process.env.AICARPOOL_KEY, baseURL: `${process.env.AICARPOOL_BASE_URL}/v1`,
                            maxRetries: 0, timeout: 60000 });
const model = 'gpt-4.1-mini';
const messages = [{ role: 'user', content: 'say hello' }];

// Reads a chat completion stream: the text, the usage chunk if one came, and
// how many chunks had no choice (only a usage chunk should).
async function readChatStream(stream) {
    let text = '';
    let usage = null;
    let chunks = 0;
    let emptyChoiceChunks = 0;
    let finish_reason = null;
    for await (const chunk of stream) {
        chunks++;
        if (chunk.choices.length === 0) emptyChoiceChunks++;
        for (const c of chunk.choices) {
            if (c.delta?.content) text += c.delta.content;
            if (c.finish_reason) finish_reason = c.finish_reason;
        }
        if (chunk.usage) usage = chunk.usage;
    }
    return { text, finish_reason, usage, chunks, empty_choice_chunks: emptyChoiceChunks };
}

const cases = {
    async chat_plain() {
        const r = await client.chat.completions.create({ model, messages });
        return { id: r.id, text: r.choices[0].message.content, finish_reason: r.choices[0].finish_reason, usage: r.usage };
    },
    // The client does not ask for usage: the edge asks upstream and must hide
    // the extra usage chunk from the client.
    async chat_stream() {
        return readChatStream(await client.chat.completions.create({ model, messages, stream: true }));
    },
    async chat_stream_usage() {
        return readChatStream(await client.chat.completions.create({
            model, messages, stream: true, stream_options: { include_usage: true } }));
    },
    async responses_plain() {
        const r = await client.responses.create({ model, input: 'say hello' });
        return { id: r.id, text: r.output_text, status: r.status, usage: r.usage };
    },
    async responses_stream() {
        const stream = await client.responses.create({ model, input: 'say hello', stream: true });
        let text = '';
        let final = null;
        const events = [];
        for await (const ev of stream) {
            events.push(ev.type);
            if (ev.type === 'response.output_text.delta') text += ev.delta;
            if (ev.type === 'response.completed') final = ev.response;
        }
        return { text, status: final?.status ?? null, usage: final?.usage ?? null, events };
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
    if (e instanceof OpenAI.APIError) {
        console.log(JSON.stringify({ error: { status: e.status ?? null, class: e.constructor.name, body: e.error ?? null } }));
        process.exit(3);
    }
    throw e;
}
