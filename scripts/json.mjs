// `curl … | node scripts/json.mjs data.signUp.accessToken`: prints one value of the JSON answer read from stdin
// (a string as it is, anything else as JSON; `data.model.plans.0.id` indexes arrays), for the README's curl
// walkthrough on a machine with Node and nothing else. An answer with `errors` (GraphQL) or `error` (REST), or
// without the value, is printed to stderr with exit code 1, so a script stops at the step that failed.
let text = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk) => (text += chunk));
process.stdin.on('end', () => {
  const path = process.argv[2];
  if (!path) fail('usage: node scripts/json.mjs <path, e.g. data.signUp.accessToken>');
  let answer;
  try {
    answer = JSON.parse(text);
  } catch {
    fail(`not JSON: ${text.slice(0, 500)}`);
  }
  if (answer?.errors || answer?.error) fail(text);
  let value = answer;
  for (const key of path.split('.')) value = value?.[key];
  if (value === undefined || value === null) fail(`no ${path} in ${text}`);
  console.log(typeof value === 'string' ? value : JSON.stringify(value));
});

function fail(message) {
  console.error(message);
  process.exit(1);
}
