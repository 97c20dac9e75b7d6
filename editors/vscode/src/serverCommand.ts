// Finding the hushcode server: the setting, else the Python extension's interpreter, else PATH.
import * as cp from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as vscode from 'vscode';

export type ServerSource = 'setting' | 'python' | 'path';

export interface ServerCommand {
  command: string;
  args: string[];
  source: ServerSource;
  /** The command without its `serve` part, for `hushcode model install|verify` from the same environment. */
  cli: string[];
}

export interface ServerNotFound {
  /** What was tried, for the error message and the log. */
  tried: string[];
  /** The `hushcode.server.command` setting is set but does not name an executable. */
  badSetting?: boolean;
}

export function isNotFound(r: ServerCommand | ServerNotFound): r is ServerNotFound {
  return 'tried' in r;
}

/** Splits a command line on whitespace, keeping "quoted" or 'quoted' parts together. */
export function splitCommandLine(line: string): string[] {
  const out: string[] = [];
  const re = /"([^"]*)"|'([^']*)'|(\S+)/g;
  let m: RegExpExecArray | null;
  while ((m = re.exec(line)) !== null) {
    out.push(m[1] ?? m[2] ?? m[3] ?? '');
  }
  return out;
}

function expandVariables(part: string): string {
  const folder = vscode.workspace.workspaceFolders?.[0]?.uri.fsPath ?? '';
  let s = part.replace(/\$\{userHome\}/g, os.homedir()).replace(/\$\{workspaceFolder\}/g, folder);
  if (s === '~' || s.startsWith('~/')) {
    s = os.homedir() + s.slice(1);
  }
  return s;
}

/** The `hushcode.server.command` setting as a list, or undefined when it is not set. */
export function commandFromSetting(): string[] | undefined {
  const raw = vscode.workspace.getConfiguration('hushcode').get<string | string[]>('server.command');
  let parts: string[] = [];
  if (typeof raw === 'string') {
    parts = splitCommandLine(raw.trim());
  } else if (Array.isArray(raw)) {
    parts = raw.filter((p): p is string => typeof p === 'string' && p.length > 0);
  }
  if (parts.length === 0) {
    return undefined;
  }
  parts = parts.map(expandVariables);
  if (parts.length === 1 && /^hushcode(\.exe)?$/i.test(path.basename(parts[0]!))) {
    parts.push('serve');
  }
  return parts;
}

function cliPrefix(parts: string[]): string[] {
  const i = parts.lastIndexOf('serve');
  return i > 0 ? parts.slice(0, i) : parts.slice(0, 1);
}

/** The executable as the OS would find it: an existing path, or a name found on PATH. */
export function findExecutable(name: string): string | undefined {
  const isWin = process.platform === 'win32';
  const exts = isWin ? (process.env.PATHEXT ?? '.EXE;.CMD;.BAT').split(';').concat(['']) : [''];
  const executable = (p: string): boolean => {
    try {
      const st = fs.statSync(p);
      if (!st.isFile()) {
        return false;
      }
      if (!isWin) {
        fs.accessSync(p, fs.constants.X_OK);
      }
      return true;
    } catch {
      return false;
    }
  };
  if (name.includes('/') || (isWin && name.includes('\\'))) {
    const abs = path.resolve(vscode.workspace.workspaceFolders?.[0]?.uri.fsPath ?? process.cwd(), name);
    return exts.map((e) => abs + e).find(executable);
  }
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (!dir) {
      continue;
    }
    const hit = exts.map((e) => path.join(dir, name + e)).find(executable);
    if (hit) {
      return hit;
    }
  }
  return undefined;
}

interface PythonExtensionApi {
  environments?: {
    getActiveEnvironmentPath(resource?: vscode.Uri): { id: string; path: string };
    resolveEnvironment(env: { id: string; path: string } | string): Promise<
      { executable: { uri?: vscode.Uri } } | undefined
    >;
    onDidChangeActiveEnvironmentPath?: vscode.Event<unknown>;
  };
}

/** The Python extension's API, when that extension is installed (activating it if needed). */
export async function pythonApi(): Promise<PythonExtensionApi | undefined> {
  const ext = vscode.extensions.getExtension<PythonExtensionApi | undefined>('ms-python.python');
  if (!ext) {
    return undefined;
  }
  try {
    const api = ext.isActive ? ext.exports : await withTimeout(ext.activate(), 20000);
    return api?.environments ? api : undefined;
  } catch {
    return undefined;
  }
}

async function activeInterpreter(): Promise<string | undefined> {
  const api = await pythonApi();
  const envs = api?.environments;
  if (!envs) {
    return undefined;
  }
  try {
    const resource = vscode.workspace.workspaceFolders?.[0]?.uri;
    const envPath = envs.getActiveEnvironmentPath(resource);
    const resolved = await withTimeout(envs.resolveEnvironment(envPath), 20000);
    return resolved?.executable.uri?.fsPath ?? envPath.path;
  } catch {
    return undefined;
  }
}

/** Version of the hushcode package importable by `python`, or undefined. */
function hushcodeVersionIn(python: string): Promise<string | undefined> {
  const probe = 'import importlib.metadata as m, lsp.cli; print(m.version("hushcode"))';
  return new Promise((resolve) => {
    cp.execFile(python, ['-c', probe], { timeout: 20000 }, (err, stdout) => {
      resolve(err ? undefined : stdout.trim() || undefined);
    });
  });
}

function withTimeout<T>(p: Thenable<T>, ms: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms);
    p.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(timer);
        reject(e instanceof Error ? e : new Error(String(e)));
      },
    );
  });
}

export async function resolveServerCommand(log: vscode.LogOutputChannel): Promise<ServerCommand | ServerNotFound> {
  const tried: string[] = [];
  const fromSetting = commandFromSetting();
  if (fromSetting) {
    const exe = findExecutable(fromSetting[0]!);
    if (exe) {
      return { command: exe, args: fromSetting.slice(1), source: 'setting', cli: [exe, ...cliPrefix(fromSetting).slice(1)] };
    }
    tried.push(`hushcode.server.command names "${fromSetting[0]}", which is not an executable file`);
    // An explicit setting that does not work is an error; guessing something else would hide it.
    return { tried, badSetting: true };
  }
  const python = await activeInterpreter();
  if (python) {
    const version = await hushcodeVersionIn(python);
    if (version) {
      log.info(`using hushcode ${version} from the Python extension's interpreter ${python}`);
      return { command: python, args: ['-m', 'lsp', 'serve'], source: 'python', cli: [python, '-m', 'lsp'] };
    }
    tried.push(`the interpreter selected in the Python extension (${python}) has no hushcode package`);
  }
  const onPath = findExecutable('hushcode');
  if (onPath) {
    return { command: onPath, args: ['serve'], source: 'path', cli: [onPath] };
  }
  tried.push('no `hushcode` executable on PATH');
  return { tried };
}
