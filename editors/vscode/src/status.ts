// The status bar item: model state (starting / loading / ready / off / failed); a click toggles completions.
import * as vscode from 'vscode';

export type ModelState = 'ready' | 'loading' | 'failed' | 'unloaded';

/** The answer of `workspace/executeCommand` `hushcode.status`. */
export interface ServerStatus {
  model: { state: ModelState; name: string; error: string | null };
  completionsEnabled: boolean;
}

export function isServerStatus(v: unknown): v is ServerStatus {
  if (typeof v !== 'object' || v === null) {
    return false;
  }
  const model = (v as { model?: unknown }).model;
  return typeof model === 'object' && model !== null && typeof (model as { state?: unknown }).state === 'string';
}

export type View =
  | { kind: 'starting' }
  | { kind: 'status'; status: ServerStatus }
  | { kind: 'running' }
  | { kind: 'problem'; detail: string };

export class StatusItem implements vscode.Disposable {
  private readonly item: vscode.StatusBarItem;
  view: View = { kind: 'starting' };

  constructor() {
    this.item = vscode.window.createStatusBarItem('hushcode.status', vscode.StatusBarAlignment.Right, 100);
    this.item.name = 'hushcode';
    this.item.command = 'hushcode.toggleCompletions';
    this.set(this.view);
    this.item.show();
  }

  set(view: View): void {
    this.view = view;
    const it = this.item;
    it.backgroundColor = undefined;
    let label: string;
    let text: string;
    let tooltip: string;
    switch (view.kind) {
      case 'starting':
        label = 'starting';
        text = '$(loading~spin) hushcode';
        tooltip = 'hushcode: starting the server…';
        break;
      case 'running':
        label = 'ready';
        text = '$(sparkle) hushcode';
        tooltip = 'hushcode: the server is running (it does not report the model state). Click to toggle inline completions.';
        break;
      case 'problem':
        label = 'failed';
        text = '$(error) hushcode';
        tooltip = `hushcode: ${view.detail}\nClick for what to do.`;
        it.backgroundColor = new vscode.ThemeColor('statusBarItem.errorBackground');
        break;
      case 'status': {
        const { model, completionsEnabled } = view.status;
        const name = model.name || 'the model';
        if (model.state === 'failed') {
          label = 'failed';
          text = '$(error) hushcode';
          tooltip = `hushcode: ${name} failed to load: ${model.error ?? 'unknown error'}\nClick for what to do.`;
          it.backgroundColor = new vscode.ThemeColor('statusBarItem.errorBackground');
        } else if (!completionsEnabled) {
          label = 'off';
          text = '$(circle-slash) hushcode';
          tooltip = `hushcode: inline completions are off (${name}: ${model.state}). Click to turn them on.`;
        } else if (model.state === 'ready') {
          label = 'ready';
          text = '$(sparkle) hushcode';
          tooltip = `hushcode: ${name} is ready, inline completions are on. Click to turn them off.`;
        } else if (model.state === 'loading') {
          label = 'loading';
          text = '$(loading~spin) hushcode';
          tooltip = `hushcode: loading ${name}…`;
        } else {
          label = 'unloaded';
          text = '$(circle-large-outline) hushcode';
          tooltip = `hushcode: ${name} is not loaded yet.`;
        }
        break;
      }
    }
    it.text = text;
    it.tooltip = tooltip;
    it.accessibilityInformation = { label: `hushcode: ${label}`, role: 'button' };
  }

  dispose(): void {
    this.item.dispose();
  }
}
