// Entry point: sign in or sign up, then the buyer page (customers) or the
// admin console (admins), both fed by one live WebSocket.

import { session, request, post, Live, ApiError } from './api.js';
import { Buyer } from './buyer.js';
import { Admin } from './admin.js';

const $ = (id) => document.getElementById(id);
let view = null;
let live = null;

function show(signedIn) {
  $('auth').hidden = signedIn;
  $('who').hidden = !signedIn;
  $('view').hidden = !signedIn;
}

function setConn(word) {
  const el = $('conn');
  el.textContent = word === 'live' ? 'Live' : word === 'connecting' ? 'Connecting…' : 'Offline';
  el.className = `conn ${word}`;
}

async function enter() {
  const s = session.get();
  if (!s) {
    show(false);
    return;
  }
  $('who-name').textContent = s.user.name;
  $('who-role').textContent = s.user.role;
  document.body.dataset.role = s.user.role;
  show(true);
  live = new Live((name, data) => view && view.onEvent(name, data), setConn);
  const root = $('view');
  view = s.user.role === 'admin' ? new Admin(root, live) : new Buyer(root, live);
  live.start();
  try {
    await view.start();
  } catch (e) {
    root.prepend(Object.assign(document.createElement('p'), { className: 'outcome bad', textContent: e.message }));
  }
}

function leave() {
  if (view) view.stop();
  if (live) live.stop();
  view = null;
  live = null;
  session.clear();
  delete document.body.dataset.role;
  $('view').replaceChildren();
  setConn('offline');
  show(false);
}

async function signin(email, password) {
  const { data } = await post('/api/signin', { email, password });
  session.set({ token: data.accessToken, user: data.user });
}

function say(text, kind = 'bad') {
  $('auth-msg').textContent = text;
  $('auth-msg').className = `outcome ${kind}`;
}

$('signin-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const f = new FormData(e.target);
  try {
    await signin(f.get('email'), f.get('password'));
    say('', '');
    e.target.reset();
    await enter();
  } catch (err) {
    say(err instanceof ApiError && err.code === 'INVALID_CREDENTIALS' ? 'Wrong email or password.' : err.message);
  }
});

$('signup-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const f = new FormData(e.target);
  try {
    await request('POST', '/api/signup', {
      body: { name: f.get('name'), email: f.get('email'), password: f.get('password') },
    });
    await signin(f.get('email'), f.get('password'));
    e.target.reset();
    say('', '');
    await enter();
  } catch (err) {
    say(err.message);
  }
});

$('signout').addEventListener('click', leave);
// A token that expired or was revoked: back to the sign-in form.
window.addEventListener('flashsale:unauthorized', () => {
  leave();
  say('Your session ended: sign in again.');
});

enter();
