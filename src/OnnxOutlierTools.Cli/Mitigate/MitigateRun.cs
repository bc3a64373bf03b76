using OnnxOutlierTools.Analysis;
using OnnxOutlierTools.Calibration;
using OnnxOutlierTools.Calibration.Text;
using OnnxOutlierTools.Cli.Analyze;
using OnnxOutlierTools.IO;
using OnnxOutlierTools.Mitigation.Pipeline;
using OnnxOutlierTools.Probes;
using OnnxOutlierTools.Reporting;
using OnnxOutlierTools.Reporting.Stats;
using OnnxOutlierTools.Runtime;
using OnnxOutlierTools.Structure.Recognition;

namespace OnnxOutlierTools.Cli.Mitigate;

/// <summary>What one mitigate run did.</summary>
public sealed record MitigateOutcome(MitigationOutcome Pipeline, IReadOnlyList<PointChange> Changes, string ModelPath, string ReportPath,
    CalibrationStatistics Before, CalibrationStatistics? After);

/// <summary>The mitigate pipeline, one way: locate the model, get its statistics (a stats file, or calibrate now), run the
/// steps in their fixed order with a proof after every exact group (<see cref="MitigationPipeline"/>; in a staging folder
/// beside the output, removed on failure), copy the model's companions, re-probe the result for the before/after figures,
/// write mitigation.json, and move the folder into place. Nothing is written at -o unless everything succeeded.</summary>
public static class MitigateRun
{
    public const string ReportFile = "mitigation.json";

    /// <summary>Files beside a model that travel with it (configuration and tokenizers).</summary>
    public static readonly string[] Companions =
    [
        "config.json", "genai_config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
        "tokenizer.model", "vocab.txt", "vocab.json", "merges.txt", "added_tokens.json", "tokenizer.bin", "chat_template.jinja",
    ];

    public static MitigateOutcome Execute(MitigateRequest request, IReadOnlyList<MitigationStep> steps, TextWriter log,
        IProgress<CalibrationProgress>? progress = null, string? commandLine = null)
    {
        if (steps.Count == 0) throw new UsageException("nothing to do: give at least one of --fold-norms, --smooth, --fp16-safe, --clip-ma, --sink-bias, --sink-prefix");
        CheckOutput(request);
        string modelPath = ModelLocator.Locate(request.Model);
        var before = Statistics(request, modelPath, log, progress, commandLine);
        var proofWindows = before.Windows.Take(request.ProofWindows).ToList();
        var settings = new SessionSettings { Device = request.Device == ExecutionDevice.Auto ? ExecutionDevice.Cpu : request.Device };

        string full = Path.GetFullPath(request.Output);
        string staging = Path.Combine(Path.GetDirectoryName(full)!, $".{Path.GetFileName(full)}.mitigate-{Guid.NewGuid():N}");
        try
        {
            var outcome = MitigationPipeline.Run(modelPath, StepOrder.Sort(steps), staging, before.Statistics, before.Analysis, proofWindows, settings,
                measure: (original, rewritten) => Measure(original, rewritten, before.Windows, settings), log: log,
                calibrationWindows: before.Windows, analysisSettings: request.Analysis);
            string finalFolder = Path.GetDirectoryName(outcome.ModelPath)!;
            CopyCompanions(Path.GetDirectoryName(Path.GetFullPath(modelPath))!, finalFolder);
            if (steps.OfType<SinkBiasStep>().FirstOrDefault() is { Prefix: { } prefix })
            {
                NoBosInTokenizerConfig(finalFolder, log);
                NoBosInTokenizerJson(finalFolder, log);
                string genai = Path.Combine(finalFolder, "genai_config.json");
                if (File.Exists(genai))
                {
                    File.WriteAllText(genai, Mitigation.SinkBias.SinkCompanions.UpdateGenAiConfig(File.ReadAllText(genai), prefix.Length));
                    log.WriteLine($"note: {genai}: past/present buffer sharing off, context length less the {prefix.Length} baked position(s)");
                }
            }

            CalibrationStatistics? after = null;
            IReadOnlyList<PointChange> changes = [];
            if (request.CompareStatistics)
            {
                bool dropsPrefix = steps.Any(s => s.DropsPrefix);
                // A baked prefix of P positions takes P of the context: the text-only windows are P shorter than the
                // original's (which held BOS), so their last position stays inside the model's position tables.
                int baked = steps.OfType<SinkBiasStep>().FirstOrDefault()?.Prefix?.Length ?? (dropsPrefix ? 1 : 0);
                var afterRequest = dropsPrefix && before.Windows.Count > 0
                    ? request with { SequenceLength = Math.Max(1, before.Windows.Max(w => w.Length) - baked) } : request;
                var again = AnalyzeRun.Calibrate(CalibrationRequest(afterRequest, outcome.ModelPath, dropsPrefix ? BosMode.Off : request.Bos,
                    before.Run.Text ?? request.Text, before.Run.Ids ?? request.Ids), log, progress);
                after = again.Statistics;
                changes = BeforeAfter.Compare(before.Statistics, after);
            }
            string reportPath = Path.Combine(finalFolder, ReportFile);
            MitigationReport.Write(reportPath, request, outcome, changes, before.Run, commandLine);
            Commit(finalFolder, full, request.Force);
            var committed = new MitigateOutcome(outcome with { ModelPath = Path.Combine(full, Path.GetFileName(outcome.ModelPath)) }, changes,
                Path.Combine(full, Path.GetFileName(outcome.ModelPath)), Path.Combine(full, ReportFile), before.Statistics, after);
            return committed;
        }
        finally
        {
            if (Directory.Exists(staging)) Directory.Delete(staging, recursive: true);
        }
    }

    /// <summary>A measured step's cost: next-token KL, top-1 agreement and perplexity of the model before and after it, on the
    /// calibration windows.</summary>
    private static string Measure(string original, string rewritten, IReadOnlyList<int[]> windows, SessionSettings settings)
    {
        using var a = SessionFactory.Open(original, settings);
        using var b = SessionFactory.Open(rewritten, settings);
        return Mitigation.Measurement.OutputDivergence.Measure(a, b, windows).ToString();
    }

    /// <summary>The original model's statistics, analysis and windows: calibrated now (--text/--ids), or read from --stats
    /// (the windows then come from --text/--ids, else from the text the stats file names).</summary>
    private static Calibrated Statistics(MitigateRequest request, string modelPath, TextWriter log, IProgress<CalibrationProgress>? progress, string? commandLine)
    {
        if (request.Stats is null)
        {
            if (request.Text is null && request.Ids is null) throw new UsageException("mitigate needs --stats FILE or calibration text (--text FILE or --ids FILE.json)");
            return AnalyzeRun.Calibrate(CalibrationRequest(request, request.Model, request.Bos, request.Text, request.Ids), log, progress, commandLine);
        }
        var contents = StatsFile.Read(request.Stats);
        string? text = request.Text, ids = request.Ids;
        if (text is null && ids is null) (text, ids) = (contents.Run?.Text, contents.Run?.Text is null ? contents.Run?.Ids : null);
        if (text is null && ids is null)
            throw new UsageException($"{request.Stats}: names no calibration text; give --text FILE or --ids FILE.json for the equivalence proof");
        if (text is not null && !File.Exists(text)) throw new UsageException($"{request.Stats}: its text '{text}' is not there; give --text FILE or --ids FILE.json for the equivalence proof");
        // The windows of the proof (and of the after-statistics) are rebuilt with the run's settings; the statistics are the file's.
        var windowsRun = AnalyzeRun.Calibrate(CalibrationRequest(request with { SequenceLength = request.SequenceLength ?? contents.Run?.SequenceLength,
            MaxTokens = Math.Min(request.MaxTokens, 512) }, request.Model, request.Bos, text, ids), TextWriter.Null, null);
        using var model = ModelReader.Load(modelPath);
        var structure = StructureRecognizer.Recognize(model).Structure ?? throw new StructureNotRecognizedException(modelPath, StructureRecognizer.Recognize(model));
        CheckStatsMatch(request.Stats, contents.Statistics, windowsRun.Statistics);
        var analysis = OutlierAnalyzer.Analyze(contents.Statistics, structure, request.Analysis);
        return new Calibrated(contents.Statistics, analysis, contents.Run ?? windowsRun.Run, windowsRun.Windows, modelPath);
    }

    /// <summary>A stats file of another model would drive wrong scales: its points must be this model's (same ids, same channels).</summary>
    private static void CheckStatsMatch(string statsPath, CalibrationStatistics fromFile, CalibrationStatistics fromModel)
    {
        foreach (var (id, point) in fromModel.Points)
        {
            if (fromFile[id] is not { } p) throw new UsageException($"{statsPath}: has no probe point '{id}' of this model; run analyze on this model");
            if (p.Channels != point.Channels) throw new UsageException($"{statsPath}: point '{id}' has {p.Channels} channels, this model {point.Channels}; run analyze on this model");
        }
    }

    private static AnalyzeRequest CalibrationRequest(MitigateRequest request, string model, BosMode bos, string? text, string? ids) => new()
    {
        Model = model,
        Text = text,
        Ids = text is null ? ids : null,
        Tokenizer = request.Tokenizer ?? (model == request.Model ? null : TokenizerBeside(request.Model)),
        Output = request.Output,
        SequenceLength = request.SequenceLength,
        MaxTokens = request.MaxTokens,
        Bos = bos,
        Device = request.Device,
        Analysis = request.Analysis,
    };

    /// <summary>The original model's folder, where its tokenizer is found (the staged model's folder has the copies only later).</summary>
    private static string? TokenizerBeside(string model)
    {
        string path = ModelLocator.Locate(model);
        return Path.GetDirectoryName(Path.GetFullPath(path));
    }

    private static void CopyCompanions(string from, string to)
    {
        foreach (string name in Companions)
        {
            string source = Path.Combine(from, name);
            if (File.Exists(source)) File.Copy(source, Path.Combine(to, name), overwrite: false);
        }
    }

    /// <summary>A model with a baked prefix is fed the text without BOS: a Hugging Face tokenizer_config.json that adds BOS
    /// (add_bos_token true, read by transformers and onnxruntime-genai's tokenizer) is changed to not add it.</summary>
    // Runtimes that read tokenizer.json alone (onnxruntime-genai, tokenizers.Tokenizer.from_file) add BOS from its template.
    private static void NoBosInTokenizerJson(string folder, TextWriter log)
    {
        string path = Path.Combine(folder, "tokenizer.json");
        if (!File.Exists(path)) return;
        string? updated;
        try { updated = Mitigation.SinkBias.SinkCompanions.RemoveTemplateBos(File.ReadAllText(path), path); }
        catch (Mitigation.SinkBias.SinkBiasException) { log.WriteLine($"note: {path}: not JSON; left as it was (the model takes no BOS now)"); return; }
        if (updated is null) return;
        File.WriteAllText(path, updated);
        log.WriteLine($"note: {path}: the post-processor template adds no BOS now (the BOS keys and values are baked into the model)");
    }

    private static void NoBosInTokenizerConfig(string folder, TextWriter log)
    {
        string path = Path.Combine(folder, "tokenizer_config.json");
        if (!File.Exists(path)) return;
        System.Text.Json.Nodes.JsonNode? root;
        try { root = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(path)); }
        catch (System.Text.Json.JsonException) { log.WriteLine($"note: {path}: not JSON; left as it was (the model takes no BOS now)"); return; }
        if (root is not System.Text.Json.Nodes.JsonObject config || config["add_bos_token"] is not { } add || add.GetValueKind() != System.Text.Json.JsonValueKind.True) return;
        config["add_bos_token"] = false;
        File.WriteAllText(path, config.ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true }));
        log.WriteLine($"note: {path}: add_bos_token set to false (the BOS keys and values are baked into the model)");
    }

    private static void CheckOutput(MitigateRequest request) => OutputFolder.Check(request.Output, request.Force, "mitigate", ReportFile);

    private static void Commit(string finished, string output, bool force) => OutputFolder.Commit(finished, output, force);
}
