using OnnxOutlierTools.Cli.Analyze;
using System.CommandLine;
using System.Globalization;
using OnnxOutlierTools.Import;
using OnnxOutlierTools.Inspection;
using OnnxOutlierTools.IO;
using OnnxOutlierTools.Passes;
using OnnxOutlierTools.Probes;
using OnnxOutlierTools.Structure.Recognition;

namespace OnnxOutlierTools.Cli.Commands;

/// <summary><c>probe MODEL -o OUT.onnx [--probe KINDS|TENSORS] [--top-k N] [--attention-positions P] [--force] [--json]</c>:
/// writes the model with in-graph activation statistics as extra outputs, and its manifest <c>OUT.probes.json</c>.</summary>
public static class ProbeCommand
{
    public static Command Create(CliContext context)
    {
        var model = new Argument<string>("MODEL")
        {
            Description = "The .onnx model to probe (with its external data), or a model folder (found as for inspect).",
        };
        var output = new Option<string>("--output", "-o")
        {
            Description = "The probed .onnx file to write (a file, not a folder); the manifest goes beside it as OUT.probes.json " +
                "(OUT.onnx's name without .onnx). Tensors keep their layout (external stay external, in OUT.onnx.data).",
            HelpName = "OUT.onnx",
            Required = true,
        };
        var probe = new Option<string[]>("--probe")
        {
            Description = "What to probe, comma-separated: residual (embedding, block outputs, residual sums), linear-inputs " +
                "(attention-input, o-input, ffn-input, down-input), attention (per-head mass on the first positions), embedding, " +
                "residual-sum, all (default), or tensor names. Repeatable.",
            HelpName = "KINDS|TENSORS",
            AllowMultipleArgumentsPerToken = false,
        };
        var topK = new Option<int?>("--top-k") { Description = "Entries of the global top-k |x| list per point and run (default 32).", HelpName = "N" };
        var positions = new Option<int?>("--attention-positions")
        {
            Description = "Leading key positions whose attention mass is measured (default 8).",
            HelpName = "P",
        };
        var force = new Option<bool>("--force", "-f") { Description = "Replace OUT.onnx (its data file) and OUT.probes.json if they exist." };
        var json = new Option<bool>("--json") { Description = "Write the result (files, points per kind, skipped points) as JSON instead of text." };
        var command = new Command("probe",
            "Add in-graph activation statistics (per-channel max/min and sums of x, x^2, x^4, per-token max and median |x|, " +
            "global top-k |x|, attention mass on the first positions) as extra outputs after the original ones, for calibration " +
            "in any runtime; writes the probed model and its manifest. Exit code 3 if no blocks are recognized.")
        {
            model, output, probe, topK, positions, force, json,
        };
        command.SetAction(parseResult => context.Guard(parseResult, () =>
        {
            var settings = new ProbeSettings();
            if (parseResult.GetValue(topK) is int k)
            {
                if (k < 1) throw new UsageException($"--top-k must be at least 1, not {k}");
                settings = settings with { TopK = k };
            }
            if (parseResult.GetValue(positions) is int p)
            {
                if (p < 1) throw new UsageException($"--attention-positions must be at least 1, not {p}");
                settings = settings with { AttentionPositions = p };
            }
            settings = ProbeSelection.Apply(settings, parseResult.GetValue(probe) ?? []);
            return Execute(parseResult.GetValue(model)!, parseResult.GetValue(output)!, settings, parseResult.GetValue(force),
                context.Out, context.Error, parseResult.GetValue(json));
        }));
        return command;
    }

    /// <summary>OUT.onnx -> OUT.probes.json (a name without .onnx gets .probes.json appended).</summary>
    public static string ManifestPath(string output) =>
        (output.EndsWith(".onnx", StringComparison.OrdinalIgnoreCase) ? output[..^5] : output) + ".probes.json";

    public static int Execute(string input, string output, ProbeSettings settings, bool force, TextWriter stdout, TextWriter stderr, bool json = false)
    {
        CheckOutputIsAFile(output);
        string manifestPath = ManifestPath(output);
        // Refused before any work, so nothing is written when the manifest is in the way.
        if (!force && File.Exists(manifestPath)) throw new OutputExistsException(manifestPath, "already exists");
        string modelPath = ModelLocator.Locate(input);
        ProbeManifest manifest;
        PassResult result;
        SaveResult saved;
        // The same probed model analyze runs: a decoder nested in BeamSearch is written as a model of its own.
        ProbedModel probedModel;
        try
        {
            probedModel = ProbedModel.Create(modelPath, settings);
        }
        catch (StructureNotRecognizedException ex)
        {
            stderr.WriteLine($"error: {ErrorHandler.OneLine(modelPath)}: cannot place probes: {ErrorHandler.OneLine(ex.Result.Message)} (see inspect --layers --explain)");
            return ErrorHandler.NotRecognized;
        }
        using (var probed = probedModel)
        {
            if (probed.Note is { } note) stderr.WriteLine("note: " + ErrorHandler.OneLine(note));
            result = probed.Result;
            manifest = probed.Manifest;
            if (manifest.Points.Count == 0)
                throw new UsageException($"{modelPath}: no probe point of the kinds asked for ({string.Join(", ", settings.Kinds.Select(k => k.Rule()))}) exists in this model");
            saved = ModelWriter.Save(probed.Model, output, new SaveOptions { Layout = TensorLayout.Preserve, Overwrite = force });
        }
        AtomicTextFile.Write(manifestPath, JsonOutput.Serialize(manifest) + Environment.NewLine, force);
        foreach (string warning in saved.Warnings) ErrorHandler.Warn(stderr, warning);
        foreach (var skip in manifest.Skipped) ErrorHandler.Warn(stderr, $"not probed: {skip.Id}: {skip.Reason}");

        var counts = result.Counts.Where(c => c.Value > 0).ToDictionary(c => c.Key, c => c.Value);
        if (json)
        {
            stdout.WriteLine(JsonOutput.Serialize(new
            {
                schemaVersion = 1,
                command = "probe",
                input = Path.GetFullPath(modelPath),
                model = Path.GetFullPath(saved.ModelPath),
                manifest = Path.GetFullPath(manifestPath),
                points = manifest.Points.Count,
                outputs = manifest.Points.Sum(p => p.Outputs.Count),
                counts,
                skipped = manifest.Skipped,
            }));
        }
        else
        {
            string perKind = string.Join(", ", counts.Select(c => $"{c.Key} {c.Value}"));
            stdout.WriteLine($"wrote {output}: {manifest.Points.Count} probe points ({perKind}), {manifest.Points.Sum(p => p.Outputs.Count).ToString(CultureInfo.InvariantCulture)} outputs after the " +
                $"{manifest.OriginalOutputs.Count} original ones{(manifest.Skipped.Count > 0 ? $", {manifest.Skipped.Count} skipped" : "")}; manifest {manifestPath}");
        }
        return ErrorHandler.Success;
    }

    private static void CheckOutputIsAFile(string output)
    {
        string example = Path.Combine(output, "model.onnx");
        if (Directory.Exists(output))
            throw new UsageException($"{output}: is a directory; probe -o names the .onnx file to write (for example {example})");
        if (output.EndsWith(Path.DirectorySeparatorChar) || output.EndsWith(Path.AltDirectorySeparatorChar))
            throw new UsageException($"{output}: ends in a separator, so names a directory; probe -o names the .onnx file to write (for example {example})");
    }
}
