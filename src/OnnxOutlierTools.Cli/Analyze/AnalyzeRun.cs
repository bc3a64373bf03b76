using System.Security.Cryptography;
using OnnxOutlierTools.Analysis;
using OnnxOutlierTools.Calibration;
using OnnxOutlierTools.Calibration.Text;
using OnnxOutlierTools.IO;
using OnnxOutlierTools.Probes;
using OnnxOutlierTools.Reporting;
using OnnxOutlierTools.Reporting.Html;
using OnnxOutlierTools.Reporting.Stats;
using OnnxOutlierTools.Runtime;
using OnnxOutlierTools.Structure.Roles;

namespace OnnxOutlierTools.Cli.Analyze;

/// <summary>What one analyze run produced (also what the tests inspect).</summary>
public sealed record AnalyzeOutcome(CalibrationStatistics Statistics, AnalysisResult Analysis, RunSettings Run, string StatsPath, string ReportJsonPath, string ReportHtmlPath);

/// <summary>A calibration run's results before anything is written: the statistics, their analysis, the settings, and the
/// windows that were fed (mitigate proves its rewrites on them).</summary>
public sealed record Calibrated(CalibrationStatistics Statistics, AnalysisResult Analysis, RunSettings Run, IReadOnlyList<int[]> Windows, string ModelPath);

/// <summary>The analyze pipeline, one way: locate and load the model, recognize it, build the calibration windows, probe the
/// model in memory, run the windows through ONNX Runtime merging the probe outputs, analyze the statistics with the
/// weights, write stats.json, report.json and report.html. Every input is checked before the long part starts (tokenizer,
/// text, window length against the context, ids against the embedding, existing outputs), so a bad input costs nothing.</summary>
public static class AnalyzeRun
{
    public static readonly string[] OutputFiles = ["stats.json", "report.json", "report.html"];

    public static AnalyzeOutcome Execute(AnalyzeRequest request, TextWriter log, IProgress<CalibrationProgress>? progress = null, string? commandLine = null)
    {
        CheckOutputs(request);
        var calibrated = Calibrate(request, log, progress, commandLine);
        var (statistics, analysis, run) = (calibrated.Statistics, calibrated.Analysis, calibrated.Run);
        Directory.CreateDirectory(request.Output);
        string statsPath = Path.Combine(request.Output, "stats.json"), jsonPath = Path.Combine(request.Output, "report.json"), htmlPath = Path.Combine(request.Output, "report.html");
        StatsFile.Write(statsPath, statistics, run, overwrite: request.Force);
        ReportJson.Write(jsonPath, statistics, analysis, run, overwrite: request.Force);
        HtmlReport.Write(htmlPath, statistics, analysis, run, overwrite: request.Force);
        return new AnalyzeOutcome(statistics, analysis, run, statsPath, jsonPath, htmlPath);
    }

    /// <summary>Everything of <see cref="Execute"/> but the files: probe in memory, calibrate, analyze
    /// (<see cref="AnalyzeRequest.Output"/> is not used).</summary>
    public static Calibrated Calibrate(AnalyzeRequest request, TextWriter log, IProgress<CalibrationProgress>? progress = null, string? commandLine = null)
    {
        string modelPath = ModelLocator.Locate(request.Model);
        using var probed = ProbedModel.Create(modelPath, request.Probes, request.Model);
        if (probed.Note is { } note) log.WriteLine("note: " + ErrorHandler.OneLine(note));
        var structure = probed.Structure;
        foreach (var skipped in probed.Manifest.Skipped) log.WriteLine($"note: probe {skipped.Id} skipped: {ErrorHandler.OneLine(skipped.Reason)}");
        if (probed.Manifest.Points.Count == 0) throw new CalibrationException($"{modelPath}: no probe point of the requested kinds exists in this model");

        var (corpus, tokenizer) = BuildCorpus(request, probed, modelPath);

        string? deviceNote = null;
        var sessionSettings = new SessionSettings { Device = request.Device, OnDeviceNote = n => deviceNote = n };
        using var session = InMemoryModel.Open(probed.Model, sessionSettings);
        if (deviceNote is not null) log.WriteLine("note: " + ErrorHandler.OneLine(deviceNote));
        var windows = corpus.Windows.Select(w => w.Ids).ToArray();
        var statistics = CalibrationRunner.Run(session, probed.Manifest, windows,
            new CalibrationRunOptions { BatchSize = request.BatchSize, Progress = progress }, structure.Inputs.InputIds?.Name);
        FillTokenTexts(statistics, tokenizer);

        var analysis = OutlierAnalyzer.Analyze(statistics, structure, request.Analysis);
        var run = new RunSettings
        {
            Text = request.Text,
            TextSha256 = request.Text is null ? null : Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(request.Text))),
            Ids = request.Ids,
            Tokenizer = tokenizer?.Source,
            TokenizerKind = tokenizer?.Kind,
            SequenceLength = corpus.Settings.SeqLen,
            MaxTokens = corpus.Settings.MaxTokens,
            Bos = request.Bos.ToString().ToLowerInvariant(),
            BosAdded = corpus.Bos?.Prepend,
            BatchSize = request.BatchSize,
            Device = request.Device.ToString().ToLowerInvariant(),
            DeviceUsed = session.Device.ToString().ToLowerInvariant(),
            CommandLine = commandLine,
            ToolVersion = typeof(AnalyzeRun).Assembly.GetName().Version?.ToString(),
            Finished = DateTimeOffset.UtcNow,
        };
        return new Calibrated(statistics, analysis, run, windows, modelPath);
    }

    /// <summary>The windows through the calibration layer's one entry point (CalibrationInputs.Prepare: tokenizer found beside
    /// the model, BOS policy, encoder segments, context and embedding-row checks); the window length defaults to min(context, 512).</summary>
    private static (CalibrationCorpus Corpus, TextTokenizer? Tokenizer) BuildCorpus(AnalyzeRequest request, ProbedModel probed, string modelPath)
    {
        var structure = probed.Structure;
        var context = ModelLimits.Context(probed.Model, structure);
        var rows = ModelLimits.Vocabulary(structure);
        int seqLen = request.SequenceLength ?? (int)Math.Min(context?.Value ?? 512, 512);
        var prepared = CalibrationInputs.Prepare(new CalibrationRequest(modelPath, request.Text, request.Ids, request.Tokenizer, seqLen, request.MaxTokens,
            request.Bos, structure.Architecture == ModelArchitecture.Encoder,
            context is null ? null : (checked((int)context.Value), context.Source), rows is null ? null : checked((int)rows.Value)));
        return (prepared.Corpus, prepared.Tokenizer);
    }

    /// <summary>Token texts for every id the kept lists refer to (what the reports show next to a position).</summary>
    private static void FillTokenTexts(CalibrationStatistics statistics, TextTokenizer? tokenizer)
    {
        if (tokenizer is null) return;
        var ids = statistics.Points.Values.SelectMany(p => p.Top.Select(t => t.Token.TokenId)
            .Concat(p.LargestTokens.Select(t => t.Token.TokenId)).Concat(p.HighestRatioTokens.Select(t => t.Token.TokenId))).Distinct();
        foreach (int id in ids)
            if (id >= 0 && id < tokenizer.VocabSize) statistics.TokenTexts[id] = tokenizer.Decode(id);
    }

    private static void CheckOutputs(AnalyzeRequest request)
    {
        if (File.Exists(request.Output)) throw new UsageException($"{request.Output}: is a file; analyze -o names the folder to write {string.Join(", ", OutputFiles)} into");
        if (request.Force) return;
        foreach (string name in OutputFiles)
        {
            string path = Path.Combine(request.Output, name);
            if (File.Exists(path) || Directory.Exists(path)) throw new OutputExistsException(path, "exists");
        }
    }
}
