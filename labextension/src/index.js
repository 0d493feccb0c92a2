// dlcourse's JupyterLab extension: tells the student, in their open JupyterLab, when one of
// their kernels holds GPU memory idle (with the time left before it is shut down) and when
// one died (which, when, why, what to try), and links their own page, /services/my-gpu/.
//
// It reads the student's own data from that page's API (same origin). The page's service
// signs in with the hub (JupyterHub's service OAuth), and JupyterHub asks a script's
// cookie-authenticated fetch for the service's XSRF token (jupyterhub/_xsrf_utils.py,
// _needs_check_xsrf: only navigations are exempt). The token is in the page itself, so the
// extension loads the page once in a hidden frame (a navigation: the OAuth round trip
// happens there, like a click on the link) and reads it from the page's <meta name="xsrf">.
import { Notification, ICommandPalette, showDialog, Dialog } from "@jupyterlab/apputils";
import { PageConfig, URLExt } from "@jupyterlab/coreutils";
import { ILauncher } from "@jupyterlab/launcher";
import { IMainMenu } from "@jupyterlab/mainmenu";

const SERVICE = "my-gpu";
const POLL_MS = 5000; // a death shows within 10 s: one poll, plus the exporter's own delay
const COMMAND = "dlcourse:open-my-gpu";
const LABEL = "My GPU use";

function gib(bytes) {
  return (bytes / 2 ** 30).toFixed(1) + " GiB";
}

function minutes(seconds) {
  return seconds < 90 ? Math.round(seconds) + " s" : Math.round(seconds / 60) + " min";
}

// JupyterLab cuts a notification's message at 140 characters: names are kept short, and a
// death's advice opens in a dialog ("What to try").
function short(name) {
  return name.length > 40 ? name.slice(0, 18) + "…" + name.slice(-21) : name;
}

function pageUrl() {
  // The hub's base URL is its prefix less "hub/" (JupyterHub's singleuser page config).
  const hubPrefix = PageConfig.getOption("hubPrefix");
  if (!hubPrefix) return null; // not under a JupyterHub
  const base = hubPrefix.replace(/hub\/?$/, "");
  return PageConfig.getOption("hubHost") + URLExt.join(base, "services", SERVICE, "/");
}

class Watcher {
  constructor(app, page) {
    this.app = app;
    this.page = page;
    this.xsrf = null;
    this.names = new Map(); // kernel id -> notebook path, remembered after the kernel dies
    this.idleNotes = new Map(); // kernel id + idle since -> notification id
    this.seenDeaths = new Set();
    this.since = Date.now() / 1000 - 60; // deaths of the last minute count as new
  }

  token() {
    return new Promise((resolve) => {
      const frame = document.createElement("iframe");
      frame.hidden = true;
      frame.src = this.page;
      const done = (value) => {
        frame.remove();
        resolve(value);
      };
      frame.addEventListener("load", () => {
        let value = null;
        try {
          const meta = frame.contentDocument.querySelector('meta[name="xsrf"]');
          value = meta ? meta.content : null;
        } catch (err) {
          value = null; // not the page (the hub's login after a logout)
        }
        done(value);
      });
      setTimeout(() => done(null), 30000);
      document.body.appendChild(frame);
    });
  }

  async names_of_kernels() {
    try {
      await this.app.serviceManager.sessions.refreshRunning();
      for (const session of this.app.serviceManager.sessions.running()) {
        if (session.kernel) this.names.set(session.kernel.id, session.path || session.name);
      }
    } catch (err) {
      // the names are a courtesy: the kernel's id still tells it apart
    }
  }

  name(kernelId, fallback) {
    return short(this.names.get(kernelId) || fallback || "kernel " + kernelId.slice(0, 8));
  }

  async poll() {
    if (!this.xsrf) this.xsrf = await this.token();
    if (!this.xsrf) return;
    const response = await fetch(this.page + "api/me", {
      headers: { Accept: "application/json", "X-XSRFToken": this.xsrf },
      credentials: "same-origin",
    });
    if (!response.ok) {
      this.xsrf = null; // a new service cookie or token after the hub restarted: ask again
      return;
    }
    const data = await response.json();
    await this.names_of_kernels();
    this.showIdle(data);
    this.showDeaths(data);
  }

  actions() {
    return [{ label: LABEL, callback: () => window.open(this.page, "_blank") }];
  }

  showIdle(data) {
    const current = new Set();
    for (const k of data.kernels) {
      if (!k.idle.warned) continue;
      const key = k.kernel_id + "@" + k.gpu_idle_since;
      current.add(key);
      const held = `"${this.name(k.kernel_id, k.notebook)}" holds ${gib(k.gpu_memory_bytes)} of GPU memory idle`;
      const message =
        k.idle.seconds_left == null
          ? `${held}: please shut its kernel down when you are done.`
          : `${held}: its kernel shuts down in ${minutes(k.idle.seconds_left)} unless it uses the GPU.`;
      const id = this.idleNotes.get(key);
      if (id === undefined) {
        this.idleNotes.set(key, Notification.warning(message, { autoClose: false, actions: this.actions() }));
      } else {
        Notification.update({ id, message, type: "warning", autoClose: false, actions: this.actions() });
      }
    }
    for (const [key, id] of this.idleNotes) {
      if (!current.has(key)) {
        Notification.dismiss(id);
        this.idleNotes.delete(key);
      }
    }
  }

  showDeaths(data) {
    for (const d of data.deaths) {
      const key = d.kernel_id + "@" + d.at;
      if (this.seenDeaths.has(key) || d.at == null || d.at < this.since) continue;
      this.seenDeaths.add(key);
      const name = this.name(d.kernel_id, d.notebook);
      const when = new Date(d.at * 1000).toLocaleTimeString();
      const advise = () =>
        showDialog({
          title: `Why "${name}" died at ${when}`,
          body: `${d.what} What to try: ${d.advice}`,
          buttons: [Dialog.okButton({ label: "OK" })],
        });
      Notification.error(`"${name}" died at ${when}. ${d.what}`, {
        autoClose: false,
        actions: [{ label: "What to try", callback: advise }, ...this.actions()],
      });
    }
  }

  start() {
    const tick = async () => {
      try {
        await this.poll();
      } catch (err) {
        console.warn("dlcourse: the GPU page did not answer", err);
      }
      setTimeout(tick, POLL_MS);
    };
    tick();
  }
}

const plugin = {
  id: "@dlcourse/jupyterlab-gpu:plugin",
  description: "Idle GPU warnings, kernel deaths and a link to the student's own GPU page",
  autoStart: true,
  optional: [ICommandPalette, ILauncher, IMainMenu],
  activate: (app, palette, launcher, mainMenu) => {
    const page = pageUrl();
    if (!page) return;
    app.commands.addCommand(COMMAND, {
      label: LABEL,
      caption: "Your GPU, memory, GPU-hours, kernels and why a kernel died",
      execute: () => window.open(page, "_blank"),
    });
    if (palette) palette.addItem({ command: COMMAND, category: "dlcourse" });
    if (launcher) launcher.add({ command: COMMAND, category: "Other", rank: 0 });
    if (mainMenu) mainMenu.helpMenu.addGroup([{ command: COMMAND }], 0);
    new Watcher(app, page).start();
  },
};

export default plugin;
