// hushcode for VS Code: starts `hushcode serve` behind vscode-languageclient. Ghost text and code actions
// come from the standard LSP features the client maps by itself; the extension adds the launcher,
// settings, a status bar item and a few commands.
import * as cp from 'node:child_process';
import * as os from 'node:os';
import * as vscode from 'vscode';
import {
  CloseAction,
  DynamicFeature,
  ErrorAction,
  ExecuteCommandRequest,
  LanguageClient,
  State,
  type DynamicFeature as DynamicFeatureType,
  type ErrorHandler,
  type ExecuteCommandRegistrationOptions,
  type LanguageClientOptions,
  type RegistrationData,
  type ServerOptions,
  type StaticFeature,
} from 'vscode-languageclient/node';
import {
  isNotFound,
  pythonApi,
  resolveServerCommand,
  type ServerCommand,
  type ServerNotFound,
} from './serverCommand';
import { serverSettings } from './settings';
import { isServerStatus, StatusItem, type ServerStatus } from './status';

/** Commands this extension registers itself; the client must not register server commands of the same id. */
const OWN_COMMANDS = [
  'hushcode.restartServer',
  'hushcode.showLog',
  'hushcode.toggleCompletions',
  'hushcode.installModel',
  'hushcode.verifyModel',
] as const;

const POLL_MS = 2000;
const INSTALL_HINT = 'pip install hushcode';

/**
 * vscode-languageclient registers a VS Code command for every command in the server's
 * `executeCommandProvider`; `hushcode.toggleCompletions` is also ours, so those ids are left out.
 */
class HushcodeClient extends LanguageClient {
  public override registerFeature(feature: StaticFeature | DynamicFeatureType<unknown>): void {
    if (DynamicFeature.is(feature) && feature.registrationType.method === ExecuteCommandRequest.method) {
      const dyn = feature as DynamicFeatureType<ExecuteCommandRegistrationOptions>;
      const register = dyn.register.bind(dyn);
      dyn.register = (data: RegistrationData<ExecuteCommandRegistrationOptions>) => {
        const own = new Set<string>(OWN_COMMANDS);
        const commands = data.registerOptions.commands.filter((c) => !own.has(c));
        register({ ...data, registerOptions: { ...data.registerOptions, commands } });
      };
    }
    super.registerFeature(feature);
  }

  /** A failed start is reported by the extension with the server's exit status and stderr instead. */
  public override error(message: string, data?: unknown, showNotification?: boolean | 'force'): void {
    const startFailed = message.endsWith("couldn't create connection to server.");
    super.error(message, data, startFailed ? false : showNotification);
  }
}

/** `hushcode.model.name` may be a path to a GGUF file instead of a registry name. */
function isModelFile(name: string): boolean {
  return /[\\/]/.test(name) || name.toLowerCase().endsWith('.gguf');
}

function isAlive(child: cp.ChildProcess): boolean {
  return child.exitCode === null && child.signalCode === null;
}

function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/**
 * `hushcode.server.command` is machine-overridable: in a remote window (code-server, SSH, containers)
 * the settings editor lists it under the Remote tab only, so open that one there.
 */
async function openSettings(): Promise<void> {
  const query = 'hushcode.server.command';
  if (vscode.env.remoteName) {
    try {
      await vscode.commands.executeCommand('workbench.action.openRemoteSettings', { query });
      return;
    } catch {
      // fall through to the user settings
    }
  }
  await vscode.commands.executeCommand('workbench.action.openSettings', query);
}

class Controller implements vscode.Disposable {
  private client: HushcodeClient | undefined;
  private server: ServerCommand | undefined;
  private busy: Promise<void> = Promise.resolve();
  private pollTimer: NodeJS.Timeout | undefined;
  private pollErrors = 0;
  private stopping = false;
  private lastModelError: string | undefined;
  private child: cp.ChildProcess | undefined;
  private stderrTail: string[] = [];
  private lastExit: string | undefined;
  private reachedRunning = false;

  constructor(
    private readonly log: vscode.LogOutputChannel,
    private readonly status: StatusItem,
  ) {}

  /** Start, stop and restart run one at a time, in order. */
  private serial(work: () => Promise<void>): Promise<void> {
    this.busy = this.busy.then(work, work);
    return this.busy;
  }

  start(): Promise<void> {
    return this.serial(() => this.doStart());
  }

  restart(): Promise<void> {
    return this.serial(async () => {
      await this.doStop();
      await this.doStart();
    });
  }

  stop(): Promise<void> {
    return this.serial(() => this.doStop());
  }

  private async doStart(): Promise<void> {
    this.status.set({ kind: 'starting' });
    this.lastModelError = undefined;
    const resolved = await resolveServerCommand(this.log);
    if (isNotFound(resolved)) {
      this.server = undefined;
      this.reportNotFound(resolved);
      return;
    }
    this.server = resolved;
    this.log.info(`starting the server (${resolved.source}): ${[resolved.command, ...resolved.args].join(' ')}`);
    this.reachedRunning = false;
    // The extension spawns the process itself: it keeps the stderr tail and exit status for error
    // messages, and passes no `--stdio` (TransportKind.stdio would append it; `hushcode serve` refuses it).
    const serverOptions: ServerOptions = () => this.spawnServer(resolved);
    const client = new HushcodeClient('hushcode', 'hushcode', serverOptions, this.clientOptions());
    this.client = client;
    client.onDidChangeState((e) => {
      if (this.client !== client) {
        return;
      }
      if (e.newState === State.Running) {
        this.reachedRunning = true;
        this.pollErrors = 0;
        this.schedulePoll(0);
      } else if (e.newState === State.Stopped && !this.stopping) {
        this.cancelPoll();
        this.status.set({ kind: 'problem', detail: `the server stopped${this.exitDetail()}. See hushcode: Show Log.` });
      }
    });
    try {
      await client.start();
    } catch (e) {
      this.cancelPoll();
      await this.childExited(1000);
      const why = this.exitDetail() || `: ${errorMessage(e)}`;
      const detail = `the server did not start${why}`;
      this.log.error(detail);
      this.status.set({ kind: 'problem', detail });
      void vscode.window
        .showErrorMessage(
          `hushcode: ${detail}. If hushcode is not installed, run "${INSTALL_HINT}", or set hushcode.server.command to the command that starts it.`,
          'Show Log',
          'Open Settings',
        )
        .then((pick) => (pick === 'Show Log' ? this.log.show() : pick === 'Open Settings' ? openSettings() : undefined));
    }
  }

  private spawnServer(server: ServerCommand): Promise<cp.ChildProcess> {
    const folder = vscode.workspace.workspaceFolders?.find((f) => f.uri.scheme === 'file');
    const child = cp.spawn(server.command, server.args, {
      cwd: folder?.uri.fsPath ?? os.homedir(),
      env: process.env,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    this.child = child;
    this.stderrTail = [];
    this.lastExit = undefined;
    let pending = '';
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk: string) => {
      const lines = (pending + chunk).split(/\r?\n/);
      pending = lines.pop() ?? '';
      this.stderrTail.push(...lines.filter((l) => l.trim()));
      this.stderrTail.splice(0, Math.max(0, this.stderrTail.length - 20));
    });
    child.on('exit', (code, signal) => {
      if (this.child === child) {
        this.lastExit = signal ? `killed by ${signal}` : `exit code ${String(code)}`;
      }
    });
    return new Promise((resolve, reject) => {
      child.once('spawn', () => {
        resolve(child);
      });
      child.once('error', reject);
    });
  }

  /** " (exit code 2: <last stderr line>)" for the latest server process, or "" while it runs. */
  private exitDetail(): string {
    if (!this.lastExit) {
      return '';
    }
    const last = this.stderrTail.at(-1);
    return ` (${this.lastExit}${last ? `: ${last.trim()}` : ''})`;
  }

  private childExited(ms: number): Promise<void> {
    const child = this.child;
    if (!child || !isAlive(child)) {
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      child.once('exit', () => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  private async doStop(): Promise<void> {
    this.cancelPoll();
    const client = this.client;
    this.client = undefined;
    if (!client) {
      return;
    }
    this.stopping = true;
    try {
      if (client.isRunning()) {
        await client.stop(3000);
      }
      await client.dispose(1000);
    } catch (e) {
      this.log.warn(`stopping the server: ${errorMessage(e)}`);
    } finally {
      this.stopping = false;
    }
    // `shutdown` + `exit` normally end it; a server that hangs is ended here.
    const child = this.child;
    if (child && isAlive(child)) {
      await this.childExited(2000);
      if (isAlive(child)) {
        this.log.warn('the server did not exit after shutdown; killing it');
        child.kill('SIGKILL');
      }
    }
  }

  private clientOptions(): LanguageClientOptions {
    const restarts: number[] = [];
    const errorHandler: ErrorHandler = {
      error: (_error, _message, count) => ({ action: (count ?? 0) <= 3 ? ErrorAction.Continue : ErrorAction.Shutdown }),
      closed: () => {
        if (!this.reachedRunning) {
          // It died before answering `initialize`: restarting would only fail again. doStart reports it.
          return { action: CloseAction.DoNotRestart, handled: true };
        }
        const now = Date.now();
        restarts.push(now);
        while (restarts.length > 0 && now - restarts[0]! > 180_000) {
          restarts.shift();
        }
        if (restarts.length <= 4) {
          this.log.warn('the server exited; restarting it');
          return { action: CloseAction.Restart, handled: true };
        }
        this.status.set({ kind: 'problem', detail: 'the server crashed 5 times in 3 minutes and was not restarted.' });
        return {
          action: CloseAction.DoNotRestart,
          message: 'hushcode: the server crashed 5 times in 3 minutes and was not restarted. See "hushcode: Show Log", then run "hushcode: Restart Server".',
        };
      },
    };
    return {
      documentSelector: [{ scheme: 'file' }, { scheme: 'untitled' }],
      outputChannel: this.log,
      initializationOptions: () => serverSettings(),
      // Deprecated in favour of the pull model, but it is what makes the client send
      // workspace/didChangeConfiguration, after which the server pulls `hushcode` again.
      // eslint-disable-next-line @typescript-eslint/no-deprecated
      synchronize: { configurationSection: 'hushcode' },
      errorHandler,
      // No retry and no extra notification: doStart() reports the failure with the fix.
      initializationFailedHandler: () => false,
      middleware: {
        workspace: {
          // Answer `workspace/configuration` for `hushcode` with the same shape as initializationOptions.
          configuration: async (params, token, next) => {
            const result = await next(params, token);
            if (!Array.isArray(result)) {
              return result;
            }
            return params.items.map((item, i) => {
              if (item.section !== 'hushcode') {
                return result[i] as unknown;
              }
              const scope = item.scopeUri ? vscode.Uri.parse(item.scopeUri) : undefined;
              return serverSettings(scope);
            });
          },
        },
        provideInlineCompletionItems: (document, position, context, token, next) => {
          const disabled = vscode.workspace.getConfiguration('hushcode', document).get<string[]>('disabledLanguages', []);
          return disabled.includes(document.languageId) ? null : next(document, position, context, token);
        },
      },
    };
  }

  private reportNotFound(r: ServerNotFound): void {
    const detail = `the hushcode server was not found (${r.tried.join('; ')}).`;
    this.log.error(detail);
    this.log.info(`PATH of the extension host: ${process.env.PATH ?? ''}`);
    this.status.set({ kind: 'problem', detail });
    const message = r.badSetting
      ? `hushcode: ${r.tried.join('; ')}. Fix the setting, or clear it and install the server with "${INSTALL_HINT}".`
      : `hushcode: the server was not found (${r.tried.join('; ')}). Install it with "${INSTALL_HINT}" (into the interpreter selected in the Python extension, or so that "hushcode" is on PATH), or set hushcode.server.command to the command that starts it, e.g. ["/path/to/.venv/bin/hushcode", "serve"].`;
    void vscode.window
      .showErrorMessage(
        message,
        'Open Settings',
        'Show Log',
      )
      .then((pick) => (pick === 'Open Settings' ? openSettings() : pick === 'Show Log' ? this.log.show() : undefined));
  }

  // ---- status polling (`workspace/executeCommand` `hushcode.status`) ----

  private cancelPoll(): void {
    if (this.pollTimer) {
      clearTimeout(this.pollTimer);
      this.pollTimer = undefined;
    }
  }

  schedulePoll(delay = POLL_MS): void {
    this.cancelPoll();
    this.pollTimer = setTimeout(() => void this.poll(), delay);
  }

  private running(): boolean {
    return this.client?.isRunning() ?? false;
  }

  private async executeServerCommand(command: string): Promise<unknown> {
    const client = this.client;
    if (!client?.isRunning()) {
      throw new Error('the server is not running');
    }
    return client.sendRequest(ExecuteCommandRequest.type, { command, arguments: [] });
  }

  async poll(): Promise<ServerStatus | undefined> {
    this.cancelPoll();
    if (!this.running()) {
      return undefined;
    }
    let answer: unknown;
    try {
      answer = await this.executeServerCommand('hushcode.status');
    } catch (e) {
      if (!this.running()) {
        return undefined;
      }
      this.pollErrors += 1;
      this.log.warn(`hushcode.status failed: ${errorMessage(e)}`);
      if (this.pollErrors >= 3) {
        this.status.set({ kind: 'running' });
      } else {
        this.schedulePoll();
      }
      return undefined;
    }
    if (!isServerStatus(answer)) {
      this.log.warn(`hushcode.status: unexpected answer ${JSON.stringify(answer)}`);
      this.status.set({ kind: 'running' });
      return undefined;
    }
    this.pollErrors = 0;
    this.status.set({ kind: 'status', status: answer });
    const { state } = answer.model;
    if (state === 'failed') {
      this.reportModelFailed(answer);
    } else if (state !== 'ready') {
      this.schedulePoll();
    }
    return answer;
  }

  private reportModelFailed(st: ServerStatus): void {
    const error = st.model.error ?? 'unknown error';
    if (this.lastModelError === error) {
      return;
    }
    this.lastModelError = error;
    this.showModelFailed(st);
  }

  private showModelFailed(st: ServerStatus): void {
    void vscode.window
      .showErrorMessage(
        `hushcode: the model ${st.model.name} failed to load: ${st.model.error ?? 'unknown error'}`,
        'Install Model',
        'Verify Model',
        'Show Log',
      )
      .then((pick) => {
        if (pick === 'Install Model') {
          return this.runModelCommand('install');
        }
        if (pick === 'Verify Model') {
          return this.runModelCommand('verify');
        }
        if (pick === 'Show Log') {
          this.log.show();
        }
        return undefined;
      });
  }

  // ---- commands ----

  async toggleCompletions(): Promise<boolean | undefined> {
    const view = this.status.view;
    if (!this.client?.isRunning()) {
      const detail = view.kind === 'problem' ? view.detail : 'the server is not running.';
      const pick = await vscode.window.showWarningMessage(`hushcode: ${detail}`, 'Restart Server', 'Open Settings', 'Show Log');
      if (pick === 'Restart Server') {
        await this.restart();
      } else if (pick === 'Open Settings') {
        await openSettings();
      } else if (pick === 'Show Log') {
        this.log.show();
      }
      return undefined;
    }
    if (view.kind === 'status' && view.status.model.state === 'failed') {
      this.showModelFailed(view.status);
      return undefined;
    }
    let enabled: unknown;
    try {
      enabled = await this.executeServerCommand('hushcode.toggleCompletions');
    } catch (e) {
      void vscode.window.showErrorMessage(`hushcode: could not toggle completions: ${errorMessage(e)}`);
      return undefined;
    }
    if (typeof enabled === 'boolean') {
      vscode.window.setStatusBarMessage(`hushcode: inline completions ${enabled ? 'on' : 'off'}`, 3000);
    }
    await this.poll();
    return typeof enabled === 'boolean' ? enabled : undefined;
  }

  showLog(): void {
    this.log.show();
  }

  async runModelCommand(verb: 'install' | 'verify'): Promise<boolean> {
    let server = this.server;
    if (!server) {
      const resolved = await resolveServerCommand(this.log);
      if (isNotFound(resolved)) {
        this.reportNotFound(resolved);
        return false;
      }
      server = resolved;
    }
    const name = serverSettings().model.name.trim();
    if (isModelFile(name)) {
      void vscode.window.showInformationMessage(
        `hushcode: hushcode.model.name is a local file (${name}); there is nothing to ${verb}. Set it to a model name from "hushcode model list" to use the registry.`,
      );
      return false;
    }
    const [command, ...prefix] = server.cli;
    const args = [...prefix, 'model', verb, ...(name ? [name] : [])];
    const shown = [command!, ...args].join(' ');
    this.log.info(`running ${shown}`);
    this.log.show(true);
    const title = verb === 'install' ? 'installing the model' : 'verifying the model';
    const result = await vscode.window.withProgress(
      { location: vscode.ProgressLocation.Notification, title: `hushcode: ${title}`, cancellable: true },
      (progress, token) =>
        new Promise<{ code: number | null; last: string }>((resolve) => {
          const child = cp.spawn(command!, args, { stdio: ['ignore', 'pipe', 'pipe'] });
          token.onCancellationRequested(() => child.kill());
          let last = '';
          const lines = (stream: NodeJS.ReadableStream): void => {
            let pending = '';
            stream.setEncoding('utf8');
            stream.on('data', (chunk: string) => {
              const parts = (pending + chunk).split(/\r?\n|\r/);
              pending = parts.pop() ?? '';
              for (const line of parts) {
                if (line.trim()) {
                  last = line.trim();
                  this.log.info(`[model ${verb}] ${line}`);
                  progress.report({ message: last.slice(0, 100) });
                }
              }
            });
            stream.on('end', () => {
              if (pending.trim()) {
                last = pending.trim();
                this.log.info(`[model ${verb}] ${pending}`);
              }
            });
          };
          lines(child.stdout);
          lines(child.stderr);
          child.on('error', (e) => resolve({ code: -1, last: e.message }));
          child.on('close', (code) => resolve({ code, last }));
        }),
    );
    if (result.code === 0) {
      const what = verb === 'install' ? 'the model is installed' : 'the model is intact';
      void vscode.window.showInformationMessage(`hushcode: ${what}${result.last ? `: ${result.last}` : '.'}`);
      if (verb === 'install') {
        await this.reloadModel();
      }
      return true;
    }
    const pick = await vscode.window.showErrorMessage(
      `hushcode: "${shown}" failed (exit ${result.code ?? 'killed'})${result.last ? `: ${result.last}` : '.'}`,
      'Show Log',
      ...(verb === 'verify' ? ['Install Model'] : []),
    );
    if (pick === 'Show Log') {
      this.log.show();
    } else if (pick === 'Install Model') {
      return this.runModelCommand('install');
    }
    return false;
  }

  /** After an install: `hushcode.restart` reloads the model in place; a server without it is restarted. */
  private async reloadModel(): Promise<void> {
    if (!this.running()) {
      await this.restart();
      return;
    }
    this.status.set({ kind: 'status', status: { model: { state: 'loading', name: serverSettings().model.name, error: null }, completionsEnabled: true } });
    this.schedulePoll(POLL_MS);
    try {
      await this.executeServerCommand('hushcode.restart');
    } catch (e) {
      this.log.info(`hushcode.restart: ${errorMessage(e)}; restarting the server instead`);
      await this.restart();
      return;
    }
    await this.poll();
  }

  onConfigurationChanged(e: vscode.ConfigurationChangeEvent): void {
    if (e.affectsConfiguration('hushcode.server')) {
      this.log.info('hushcode.server.command changed; restarting the server');
      void this.restart();
    } else if (e.affectsConfiguration('hushcode') && this.client?.isRunning()) {
      // The server pulls the new settings; a new model name means a reload, completion.inline a new state.
      this.schedulePoll(500);
    }
  }

  onPythonEnvironmentChanged(): void {
    if (this.server?.source === 'python' || !this.server) {
      this.log.info('the Python interpreter changed; restarting the server');
      void this.restart();
    }
  }

  dispose(): void {
    this.cancelPoll();
  }
}

let controller: Controller | undefined;

export function activate(context: vscode.ExtensionContext): void {
  const log = vscode.window.createOutputChannel('hushcode', { log: true });
  const status = new StatusItem();
  const { version } = context.extension.packageJSON as { version: string };
  log.info(`hushcode ${version} in ${vscode.env.appName} ${vscode.version}` +
    (vscode.env.remoteName ? ` (remote: ${vscode.env.remoteName})` : ''));
  const ctl = new Controller(log, status);
  controller = ctl;
  context.subscriptions.push(
    log,
    status,
    ctl,
    vscode.commands.registerCommand('hushcode.restartServer', () => ctl.restart()),
    vscode.commands.registerCommand('hushcode.showLog', () => ctl.showLog()),
    vscode.commands.registerCommand('hushcode.toggleCompletions', () => ctl.toggleCompletions()),
    vscode.commands.registerCommand('hushcode.installModel', () => ctl.runModelCommand('install')),
    vscode.commands.registerCommand('hushcode.verifyModel', () => ctl.runModelCommand('verify')),
    vscode.workspace.onDidChangeConfiguration((e) => ctl.onConfigurationChanged(e)),
  );
  void pythonApi().then((api) => {
    const event = api?.environments?.onDidChangeActiveEnvironmentPath;
    if (event) {
      context.subscriptions.push(event(() => ctl.onPythonEnvironmentChanged()));
    }
  });
  void ctl.start();
}

export async function deactivate(): Promise<void> {
  await controller?.stop();
  controller = undefined;
}
