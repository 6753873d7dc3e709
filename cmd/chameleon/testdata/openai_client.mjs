// The official openai npm client against a running `chameleon serve`
// (TestOpenAIClient): completions and chat completions, plain and
// streamed, a wrong key and a bad request. Prints one JSON object.
// Usage: node openai_client.mjs BASE_URL API_KEY
import OpenAI from 'openai';

const [baseURL, apiKey] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 60000 });
const out = {};

const cmpl = await client.completions.create({ model: 'tiny', prompt: 'The quick brown fox', max_tokens: 4, temperature: 0 });
out.completion = { text: cmpl.choices[0].text, usage: cmpl.usage, chameleon: cmpl.choices[0].chameleon };

let streamed = '';
const cs = await client.completions.create({ model: 'tiny', prompt: 'The quick brown fox', max_tokens: 4, temperature: 0, stream: true });
for await (const chunk of cs) streamed += chunk.choices[0]?.text ?? '';
out.completion_stream = streamed;

const messages = [
  { role: 'system', content: 'You are terse.' },
  { role: 'user', content: 'Say something about foxes.' },
];
const chat = await client.chat.completions.create({ model: 'tiny', messages, max_tokens: 6, temperature: 0 });
out.chat = {
  object: chat.object, role: chat.choices[0].message.role, content: chat.choices[0].message.content,
  finish_reason: chat.choices[0].finish_reason, usage: chat.usage, chameleon: chat.choices[0].chameleon,
};

const stream = await client.chat.completions.create({
  model: 'tiny', messages, max_tokens: 6, temperature: 0, stream: true, stream_options: { include_usage: true },
});
let content = '', role = '', objects = new Set(), usage = null, finish = null;
for await (const chunk of stream) {
  objects.add(chunk.object);
  if (chunk.usage) usage = chunk.usage;
  const c = chunk.choices[0];
  if (!c) continue;
  if (c.delta.role) role = c.delta.role;
  content += c.delta.content ?? '';
  if (c.finish_reason) finish = c.finish_reason;
}
out.chat_stream = { content, role, objects: [...objects], usage, finish_reason: finish };

// The helper that accumulates a stream into a message.
const runner = client.chat.completions.stream({ model: 'tiny', messages, max_tokens: 6, temperature: 0 });
const final = await runner.finalChatCompletion();
out.chat_stream_helper = final.choices[0].message.content;

try {
  await new OpenAI({ baseURL, apiKey: 'wrong', maxRetries: 0 }).chat.completions.create({ model: 'tiny', messages });
  out.wrong_key = 'accepted';
} catch (e) {
  out.wrong_key = { class: e.constructor.name, status: e.status, code: e.code };
}
try {
  await client.chat.completions.create({ model: 'tiny', messages: [] });
  out.bad_request = 'accepted';
} catch (e) {
  out.bad_request = { class: e.constructor.name, status: e.status, param: e.param, code: e.code };
}
console.log(JSON.stringify(out));
