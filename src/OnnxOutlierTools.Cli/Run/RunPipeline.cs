using OnnxOutlierTools.Calibration;
using OnnxOutlierTools.Cli.Analyze;
using OnnxOutlierTools.Cli.Mitigate;
using OnnxOutlierTools.Cli.Quantize;
using OnnxOutlierTools.Evaluation;
using OnnxOutlierTools.IO;
using OnnxOutlierTools.Mitigation.Pipeline;
using OnnxOutlierTools.Mitigation.SinkBias;
using OnnxOutlierTools.Probes;
using OnnxOutlierTools.Quantization.Common;
using OnnxOutlierTools.Reporting.Html;
using OnnxOutlierTools.Structure.Recognition;
using OnnxOutlierTools.Structure.Roles;

namespace OnnxOutlierTools.Cli.Run;

/// <summary>What one pipeline run did: the table and where everything went.</summary>
public sealed record RunOutcome(RunReport Report, string ReportJsonPath, string ReportHtmlPath);

/// <summary>The whole mission in one pass, one way (README "Pipeline"): inspect (the structure must be recognized), analyze
/// (statistics and findings of the original), mitigate (the recipe; every exact step proven), quantize the original and
/// the mitigated model with every scheme, evaluate all of them against the FP32 original on the same windows, and write
/// run.json and report.html (the analyze report led by the before/after table). Each model folder is written atomically
/// by its own command; run.json and report.html come last, so a folder without them is a run that did not finish.</summary>
public static class RunPipeline
{
    public const string ReportJson = "run.json";
    public const string ReportHtml = "report.html";

    public static RunOutcome Execute(RunRequest request, TextWriter log, IProgress<CalibrationProgress>? progress = null, string? commandLine = null)
    {
        ArgumentNullException.ThrowIfNull(request);
        if (!File.Exists(request.Text)) throw new UsageException($"{request.Text}: no such text file");
        string modelPath = ModelLocator.Locate(request.Model);
        string output = PrepareOutput(request);
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var notes = new List<string>();

        // 1. inspect: the structure must be recognized before anything runs.
        ModelArchitecture architecture;
        int blocks;
        long? context;
        using (var model = ModelReader.Load(modelPath))
        {
            var recognition = StructureRecognizer.Recognize(model);
            var structure = recognition.Structure ?? throw new StructureNotRecognizedException(modelPath, recognition);
            (architecture, blocks, context) = (structure.Architecture, structure.Blocks.Count, ModelLimits.Context(model, structure)?.Value);
        }
        log.WriteLine($"run: {modelPath}: {architecture.ToString().ToLowerInvariant()}, {blocks} blocks");

        // 2. analyze the original.
        log.WriteLine("run: analyze");
        var analyze = AnalyzeRun.Execute(new AnalyzeRequest
        {
            Model = modelPath, Text = request.Text, Tokenizer = request.Tokenizer, Output = Path.Combine(output, "analysis"),
            SequenceLength = request.SequenceLength, MaxTokens = request.CalibrationTokens, Device = request.Device, Force = true,
        }, log, progress, commandLine);

        // 3. mitigate with the recipe.
        RecipeChoice recipe;
        using (var model = ModelReader.Load(modelPath))
            recipe = request.Recipe is null ? RunRecipe.Default(StructureRecognizer.Recognize(model).Structure!, analyze.Analysis) : RunRecipe.Parse(request.Recipe);
        string mitigatedFolder = Path.Combine(output, "mitigated");
        log.WriteLine($"run: mitigate ({string.Join(", ", recipe.Names)})");
        MitigateOutcome mitigated;
        try { mitigated = Mitigate(request, modelPath, analyze.StatsPath, mitigatedFolder, recipe, log, progress); }
        catch (Exception ex) when (request.Recipe is null && recipe.Names.Contains("sink-bias") && Unwrap(ex) is SinkBiasException refused)
        {
            notes.Add($"sink-bias left out of the default recipe: {ErrorHandler.OneLine(refused.Message)}");
            recipe = new RecipeChoice(recipe.Names.Where(n => n != "sink-bias").ToList(), recipe.Why + "; sink-bias refused by this model");
            mitigated = Mitigate(request, modelPath, analyze.StatsPath, mitigatedFolder, recipe, log, progress);
        }

        // 4. quantize both with every scheme.
        var variants = new List<Variant>
        {
            new("original", modelPath, null, false, null),
            new("mitigated", mitigated.ModelPath, null, true, null),
        };
        foreach (var (source, isMitigated) in new[] { (modelPath, false), (mitigated.ModelPath, true) })
            foreach (string scheme in request.Schemes)
            {
                string name = $"{(isMitigated ? "mitigated" : "original")} + {scheme}";
                string folder = Path.Combine(output, "quantized", $"{(isMitigated ? "mitigated" : "original")}-{scheme}");
                log.WriteLine($"run: quantize {name}");
                try
                {
                    var quantized = QuantizeRun.Execute(new QuantizeRequest
                    {
                        Model = source, Scheme = scheme, Stats = isMitigated ? null : analyze.StatsPath, Text = request.Text, Tokenizer = request.Tokenizer,
                        Output = folder, SequenceLength = request.SequenceLength, MaxTokens = request.CalibrationTokens, Device = request.Device,
                        Compare = false, Force = true,
                    }, log, progress);
                    variants.Add(new(name, quantized.ModelPath, scheme, isMitigated, null));
                }
                catch (Exception ex) when (Unwrap(ex) is UsageException or QuantizationInputException)
                {
                    // One scheme that cannot take this model (a weight type, a scheme not in this build) leaves a row that says so.
                    variants.Add(new(name, null, scheme, isMitigated, $"not quantized: {ErrorHandler.OneLine(Unwrap(ex).Message)}"));
                }
            }

        // 5. evaluate every model against the FP32 original, on one window plan: a baked prefix takes P positions of the
        // context, so every model is scored on windows that fit the mitigated one (the same tokens for all).
        int baked;
        using (var model = ModelReader.Load(mitigated.ModelPath)) baked = ModelLimits.BakedPrefixLength(model);
        int? evalWindow = request.SequenceLength ?? (baked > 0 && context is long c ? (int)Math.Min(int.MaxValue, c - baked) : null);
        if (evalWindow != request.SequenceLength) notes.Add($"evaluation windows of {evalWindow} tokens: the context less the {baked} baked prefix position(s) of the mitigated model, for every model");
        var rows = new List<RunRow>();
        var changes = mitigated.Changes;
        foreach (var v in variants)
        {
            if (v.ModelPath is null) { rows.Add(RunRow.Failed(v, output)); continue; }
            log.WriteLine($"run: evaluate {v.Name}");
            var result = ModelEvaluator.Evaluate(new EvalRequest
            {
                Model = v.ModelPath, Reference = v.Name == "original" ? null : modelPath, Text = request.Text, Tokenizer = request.Tokenizer,
                Window = evalWindow, MaxTokens = request.EvalTokens, Device = request.Device,
                Latency = request.Latency ? new LatencySettings() : null,
            }, progress);
            string evalPath = Path.Combine(output, "evaluation", FileName(v.Name) + ".json");
            Directory.CreateDirectory(Path.GetDirectoryName(evalPath)!);
            result.WriteJson(evalPath);
            rows.Add(RunRow.From(v, result, changes, output, evalPath));
        }

        // 6. the report.
        var report = new RunReport
        {
            CommandLine = commandLine, Model = modelPath, Text = Path.GetFullPath(request.Text), Tokenizer = request.Tokenizer,
            TextSha256 = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(File.ReadAllBytes(request.Text))),
            Architecture = architecture.ToString().ToLowerInvariant(), Blocks = blocks,
            Recipe = recipe.Names, RecipeWhy = recipe.Why, Schemes = request.Schemes,
            CalibrationTokens = request.CalibrationTokens, EvalTokens = request.EvalTokens, SequenceLength = request.SequenceLength, EvalWindow = evalWindow,
            Device = request.Device.ToString().ToLowerInvariant(), Rows = rows, Notes = notes, Seconds = clock.Elapsed.TotalSeconds,
            Analysis = Relative(output, analyze.ReportHtmlPath), Mitigation = Relative(output, mitigated.ReportPath),
        };
        string jsonPath = Path.Combine(output, ReportJson), htmlPath = Path.Combine(output, ReportHtml);
        report.WriteJson(jsonPath);
        var table = report.Table(Relative(output, modelPath));
        HtmlReport.Write(htmlPath, analyze.Statistics, analyze.Analysis, analyze.Run, overwrite: true, leadingSection: PipelineSection.Render(table));
        return new RunOutcome(report, jsonPath, htmlPath);
    }

    private static MitigateOutcome Mitigate(RunRequest request, string modelPath, string statsPath, string folder, RecipeChoice recipe, TextWriter log,
        IProgress<CalibrationProgress>? progress) =>
        MitigateRun.Execute(new MitigateRequest
        {
            Model = modelPath, Stats = statsPath, Text = request.Text, Tokenizer = request.Tokenizer, Output = folder,
            SequenceLength = request.SequenceLength, MaxTokens = request.CalibrationTokens, Device = request.Device, Force = true,
        }, recipe.Steps(), log, progress);

    /// <summary>The output folder, new or one an earlier run wrote (--force); never anything else.</summary>
    private static string PrepareOutput(RunRequest request)
    {
        string output = Path.GetFullPath(request.Output);
        if (File.Exists(output)) throw new UsageException($"{request.Output}: is a file; -o names the folder the run writes");
        if (Directory.Exists(output) && Directory.EnumerateFileSystemEntries(output).Any())
        {
            if (!request.Force) throw new UsageException($"{request.Output}: exists; use --force to replace an earlier run's folder");
            if (!File.Exists(Path.Combine(output, ReportJson)) && !Directory.Exists(Path.Combine(output, "analysis")))
                throw new UsageException($"{request.Output}: is not a folder an earlier run wrote (no {ReportJson}); not replacing it");
            Directory.Delete(output, recursive: true);
        }
        Directory.CreateDirectory(output);
        return output;
    }

    private static Exception Unwrap(Exception ex)
    {
        while (ex is Passes.PassException or AggregateException && ex.InnerException is not null) ex = ex.InnerException;
        return ex;
    }

    private static string FileName(string variant) => variant.Replace(" + ", "-", StringComparison.Ordinal).Replace(' ', '-');

    /// <summary>A path inside the run's folder relative to it; anything else (the original model) as a full path.</summary>
    internal static string Relative(string output, string path)
    {
        string relative = Path.GetRelativePath(output, path);
        return relative.StartsWith("..", StringComparison.Ordinal) || Path.IsPathRooted(relative) ? Path.GetFullPath(path) : relative;
    }
}

/// <summary>A model of the run: its row label, its model file (null when it could not be made), how it was made.</summary>
public sealed record Variant(string Name, string? ModelPath, string? Scheme, bool Mitigated, string? Note);
