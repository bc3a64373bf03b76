using System.Diagnostics;
using System.Text.Json;

namespace OnnxOutlierTools.Tests.IO;

/// <summary>The verdict of <c>onnx.checker.check_model</c> on one file.</summary>
public sealed record CheckerVerdict(bool Ok, string? Error, IReadOnlyList<string> Relabelled)
{
    public override string ToString() => Ok ? (Relabelled.Count == 0 ? "OK" : $"OK (relabelled {string.Join(", ", Relabelled)})") : $"FAIL: {Error}";
}

/// <summary>Runs the Python <c>onnx</c> checker in a subprocess. Python is ONNX_OUTLIERS_PYTHON when set;
/// otherwise the first of /usr/bin/python3 and the python3 executables on PATH that can import onnx.</summary>
public static class OnnxPython
{
    private static readonly Lazy<(string? Executable, string Reason)> Located = new(Locate);

    /// <summary>A Python that can import onnx, or null (see <see cref="UnavailableReason"/>).</summary>
    public static string? Executable => Located.Value.Executable;

    /// <summary>Why the checker cannot run here, naming the missing module; for Skip messages.</summary>
    public static string UnavailableReason => Located.Value.Reason;

    /// <summary>How to check a file: with or without full_check (shape inference), and whether default-domain
    /// ops the installed onnx has no schema for at the model's opset (ORT contrib ops that ORT registers
    /// in the ONNX domain, e.g. SimplifiedLayerNormalization, or LayerNormalization below opset 17) are
    /// first moved to com.microsoft, so the checker can check the rest.</summary>
    public sealed record Request(string Path, bool FullCheck = true, bool RelabelUnknownDefaultDomainOps = false);

    /// <summary>Checks each file on a private copy (see the script), so the file given is never written:
    /// onnx 1.12's <c>check_model(path, full_check=True)</c> writes the shape-inferred model back to
    /// <c>path</c>, which read-only bits do not stop for root, and it would rewrite a fixture or the very
    /// file a test goes on to run.</summary>
    public static IReadOnlyList<CheckerVerdict> Check(params Request[] requests)
    {
        string python = Executable ?? throw new InvalidOperationException(UnavailableReason);
        var start = new ProcessStartInfo(python) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        start.ArgumentList.Add("-c");
        start.ArgumentList.Add(Script);
        foreach (var r in requests)
            start.ArgumentList.Add($"{(r.FullCheck ? "full" : "plain")}{(r.RelabelUnknownDefaultDomainOps ? "+relabel" : "")}:{r.Path}");
        using var process = Process.Start(start)!;
        var stderr = process.StandardError.ReadToEndAsync();
        string stdout = process.StandardOutput.ReadToEnd();
        if (!process.WaitForExit(120_000)) { process.Kill(); throw new TimeoutException("onnx checker did not finish in 120 s"); }
        var lines = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        if (process.ExitCode != 0 || lines.Length != requests.Length)
            throw new InvalidOperationException($"checker script failed (exit {process.ExitCode}): {stderr.Result}");
        return lines.Select(line =>
        {
            using var json = JsonDocument.Parse(line);
            var root = json.RootElement;
            return new CheckerVerdict(root.GetProperty("ok").GetBoolean(),
                root.TryGetProperty("error", out var e) ? e.GetString() : null,
                root.GetProperty("relabelled").EnumerateArray().Select(x => x.GetString()!).ToArray());
        }).ToArray();
    }

    // Each request is checked on a copy in a fresh temporary folder: the model file and every external
    // data file it names, at the same relative locations (so the verdict is the same), then removed.
    private const string Script = """
        import json, os, shutil, sys, tempfile
        import onnx
        from onnx import checker, defs

        def private_copy(path, folder):
            model = onnx.load(path, load_external_data=False)
            target = os.path.join(folder, os.path.basename(path))
            shutil.copyfile(path, target)
            source_dir = os.path.dirname(os.path.abspath(path))
            def tensors(graph):
                for t in graph.initializer:
                    yield t
                for node in graph.node:
                    for attr in node.attribute:
                        if attr.type == onnx.AttributeProto.GRAPH:
                            yield from tensors(attr.g)
                        for sub in attr.graphs:
                            yield from tensors(sub)
            for t in tensors(model.graph):
                if t.data_location != onnx.TensorProto.EXTERNAL:
                    continue
                location = next((e.value for e in t.external_data if e.key == 'location'), None)
                source = os.path.normpath(os.path.join(source_dir, location or ''))
                copy = os.path.normpath(os.path.join(folder, location or ''))
                # Locations outside the folder are left for the checker to reject, as on the original.
                if not location or not copy.startswith(folder + os.sep) or not os.path.isfile(source) or os.path.exists(copy):
                    continue
                os.makedirs(os.path.dirname(copy), exist_ok=True)
                shutil.copyfile(source, copy)
            return target

        def relabel(path):
            model = onnx.load(path, load_external_data=False)
            opset = max([o.version for o in model.opset_import if o.domain in ('', 'ai.onnx')] or [1])
            def known(op_type):
                try:
                    defs.get_schema(op_type, opset, '')
                    return True
                except Exception:
                    return False
            moved = set()
            def visit(graph):
                for node in graph.node:
                    if node.domain in ('', 'ai.onnx') and not known(node.op_type):
                        moved.add(node.op_type)
                        node.domain = 'com.microsoft'
                    for attr in node.attribute:
                        if attr.type == onnx.AttributeProto.GRAPH:
                            visit(attr.g)
                        for sub in attr.graphs:
                            visit(sub)
            visit(model.graph)
            if moved:
                if not any(o.domain == 'com.microsoft' for o in model.opset_import):
                    model.opset_import.add(domain='com.microsoft', version=1)
                onnx.save(model, path)  # the private copy
            return sorted(moved)

        for arg in sys.argv[1:]:
            mode, path = arg.split(':', 1)
            result = {'relabelled': []}
            folder = os.path.realpath(tempfile.mkdtemp(prefix='onnx-checker-'))
            try:
                target = private_copy(path, folder)
                if 'relabel' in mode:
                    result['relabelled'] = relabel(target)
                checker.check_model(target, full_check=mode.startswith('full'))
                result['ok'] = True
            except Exception as e:
                result['ok'] = False
                result['error'] = ' '.join(str(e).replace(folder, '<copy>').split())
            finally:
                shutil.rmtree(folder, ignore_errors=True)
            print(json.dumps(result))
            sys.stdout.flush()
        """;

    private static (string?, string) Locate()
    {
        var candidates = new List<string>();
        if (Environment.GetEnvironmentVariable("ONNX_OUTLIERS_PYTHON") is { Length: > 0 } env) candidates.Add(env); // an explicit choice is the only one
        else
        {
            if (File.Exists("/usr/bin/python3")) candidates.Add("/usr/bin/python3");
            foreach (string dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries))
            {
                string candidate = Path.Combine(dir, OperatingSystem.IsWindows() ? "python.exe" : "python3");
                if (File.Exists(candidate) && !candidates.Contains(candidate)) candidates.Add(candidate);
            }
        }
        var tried = new List<string>();
        foreach (string candidate in candidates)
        {
            try
            {
                var start = new ProcessStartInfo(candidate) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
                start.ArgumentList.Add("-c");
                start.ArgumentList.Add("import onnx");
                using var process = Process.Start(start)!;
                var stderr = process.StandardError.ReadToEndAsync();
                process.StandardOutput.ReadToEnd();
                if (!process.WaitForExit(30_000)) { process.Kill(); tried.Add($"{candidate} (timed out)"); continue; }
                if (process.ExitCode == 0) return (candidate, "");
                string error = stderr.Result.Split('\n', StringSplitOptions.RemoveEmptyEntries).LastOrDefault() ?? $"exit {process.ExitCode}";
                tried.Add($"{candidate} ({error.Trim()})");
            }
            catch (System.ComponentModel.Win32Exception ex)
            {
                tried.Add($"{candidate} ({ex.Message})");
            }
        }
        string where = tried.Count == 0 ? "no python3 found" : "tried " + string.Join("; ", tried);
        return (null, $"Python module 'onnx' is not importable ({where}); install python3-onnx or set ONNX_OUTLIERS_PYTHON");
    }
}
