using OnnxOutlierTools.Calibration;
using OnnxOutlierTools.Calibration.Text;
using OnnxOutlierTools.Cli.Analyze;
using OnnxOutlierTools.Cli.Mitigate;
using OnnxOutlierTools.IO;
using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Mitigation.Measurement;
using OnnxOutlierTools.Mitigation.Pipeline;
using OnnxOutlierTools.Mitigation.SinkBias;
using OnnxOutlierTools.Probes;
using OnnxOutlierTools.Quantization.Attribution;
using OnnxOutlierTools.Quantization.Common;
using OnnxOutlierTools.Quantization.W8A8;
using OnnxOutlierTools.Reporting;
using OnnxOutlierTools.Reporting.Stats;
using OnnxOutlierTools.Runtime;
using OnnxOutlierTools.Structure.Recognition;
using OnnxOutlierTools.Structure.Roles;

namespace OnnxOutlierTools.Cli.Quantize;

/// <summary>What one quantize run did.</summary>
public sealed record QuantizeOutcome(QuantizationResult Result, LinearSelection Selection, string ModelPath, string ReportPath, long OriginalBytes, long QuantizedBytes,
    DivergenceReport? Divergence, AttributionResult? Attribution, int? Windows);

/// <summary>The quantize pipeline, one way: resolve the scheme, locate and recognize the model, get what the scheme reads
/// (statistics from --stats or a calibration now on --text/--ids; windows for the comparison, the attribution and
/// activation-aware schemes), quantize the model in memory, save it with external data into a staging folder beside the
/// output, check that ONNX Runtime loads it and measure it against the original, rank the sites when asked, copy the model's
/// companions, write quantization.json and move the folder into place. Nothing is written at -o unless everything succeeded.</summary>
public static class QuantizeRun
{
    public const string ReportFile = "quantization.json";

    public static QuantizeOutcome Execute(QuantizeRequest request, TextWriter log, IProgress<CalibrationProgress>? progress = null, string? commandLine = null)
    {
        var scheme = Resolve(request.Scheme);
        CheckOutput(request);
        string modelPath = ModelLocator.Locate(request.Model);
        using var model = ModelReader.Load(modelPath);
        var recognition = StructureRecognizer.Recognize(model);
        var structure = recognition.Structure
            ?? throw new QuantizationInputException($"{modelPath}: no transformer blocks recognized, so no linears to quantize ({Text.Printable.FirstLine(recognition.Message)}; see inspect --layers --explain)");
        if (structure.NestedIn is { } nested)
            throw new QuantizationInputException($"{modelPath}: the blocks are in {nested}; quantize edits the main graph only (quantize the decoder model itself)");
        var selection = LinearSelection.Select(structure, request.Options);
        if (selection.LinearCount == 0 && selection.Embedding is null)
            throw new QuantizationInputException($"{modelPath}: no recognized block linear to quantize (a MatMul or Gemm with an initializer weight)" +
                (selection.Skipped.Count == 0 ? "" : $"; skipped: {string.Join("; ", selection.Skipped.Take(3))}"));

        var bos = request.Bos;
        if (SinkContract.PrefixOf(model) is { } prefix && bos == BosMode.Auto)
        {
            bos = BosMode.Off;
            log.WriteLine($"note: {modelPath}: has a baked sink prefix [{string.Join(",", prefix)}]; calibration windows are fed without BOS, as its input contract says");
        }

        var calibration = Calibrate(request, scheme, modelPath, model, structure, selection, bos, log, progress, commandLine);
        var settings = new SessionSettings { Device = request.Device == ExecutionDevice.Auto ? ExecutionDevice.Cpu : request.Device };
        var result = scheme.Quantize(new QuantizationInput
        {
            Model = model, Structure = structure, Options = request.Options, Statistics = calibration.Statistics, Windows = calibration.Windows, Log = log,
        });

        string full = Path.GetFullPath(request.Output);
        string staging = Path.Combine(Path.GetDirectoryName(full)!, $".{Path.GetFileName(full)}.quantize-{Guid.NewGuid():N}");
        try
        {
            Directory.CreateDirectory(staging);
            string staged = Path.Combine(staging, "model.onnx");
            var save = ModelWriter.Save(model, staged, new SaveOptions { Layout = TensorLayout.External });
            var divergence = Check(modelPath, staged, calibration.Windows, structure, settings, request.Compare, log);
            AttributionResult? attribution = null;
            if (request.Attribute)
            {
                log.WriteLine($"attributing: each of {selection.Sites.Count} site(s) quantized alone, {calibration.Windows!.Count} window(s) ...");
                attribution = ErrorAttribution.Run(modelPath, scheme, request.Options, calibration.Statistics, calibration.Windows, settings);
            }
            CopyCompanions(Path.GetDirectoryName(Path.GetFullPath(modelPath))!, staging);
            long originalBytes = ModelBytes(modelPath, model), quantizedBytes = save.ModelBytes + save.ExternalBytes;
            var outcome = new QuantizeOutcome(result, selection, Path.Combine(full, "model.onnx"), Path.Combine(full, ReportFile), originalBytes, quantizedBytes,
                divergence, attribution, calibration.Windows?.Count);
            QuantizationReport.Write(Path.Combine(staging, ReportFile), request, outcome, calibration.Run, commandLine);
            Commit(staging, full, request.Force);
            return outcome;
        }
        finally
        {
            if (Directory.Exists(staging)) Directory.Delete(staging, recursive: true);
        }
    }

    /// <summary>The scheme by name: an unknown name is a usage error listing the names; a known one not built in yet says so.</summary>
    public static IQuantizationScheme Resolve(string name)
    {
        string key = name.Trim().ToLowerInvariant();
        if (QuantizationSchemes.TryGet(key, out var scheme)) return scheme;
        var known = QuantizationSchemes.KnownNames.Union(QuantizationSchemes.Names).ToArray();
        if (known.Contains(key)) throw new UsageException($"--scheme {key}: scheme not available in this build (available: {string.Join(", ", QuantizationSchemes.Names)})");
        throw new UsageException($"--scheme must be one of {string.Join(", ", known)}, not '{name}'");
    }

    private sealed record Calibration(CalibrationStatistics? Statistics, IReadOnlyList<int[]>? Windows, RunSettings? Run);

    /// <summary>Statistics when the scheme reads them (--stats, else a calibration run on --text/--ids, probing every tensor the
    /// scheme needs), and windows of --text/--ids for the comparison, the attribution and window-driven schemes.</summary>
    private static Calibration Calibrate(QuantizeRequest request, IQuantizationScheme scheme, string modelPath, Model model, ModelStructure structure,
        LinearSelection selection, BosMode bos, TextWriter log, IProgress<CalibrationProgress>? progress, string? commandLine)
    {
        bool hasText = request.Text is not null || request.Ids is not null;
        if (request.Text is not null && request.Ids is not null) throw new UsageException("give --text or --ids, not both");
        bool needsStatistics = scheme.Needs == CalibrationNeed.Statistics;
        bool needsWindows = scheme.Needs == CalibrationNeed.Windows || request.Attribute || needsStatistics && request.Options.Attention;
        if (needsStatistics && request.Stats is null && !hasText)
            throw new UsageException($"--scheme {scheme.Name} needs calibration statistics: --stats stats.json (of analyze on this model) or --text FILE / --ids FILE.json");
        if (needsWindows && !hasText)
            throw new UsageException($"{(request.Attribute ? "--attribute" : request.Options.Attention && needsStatistics ? "--attention with --scheme " + scheme.Name : "--scheme " + scheme.Name)} needs calibration windows: --text FILE or --ids FILE.json");
        if (request.Stats is not null && !needsStatistics) log.WriteLine($"note: --scheme {scheme.Name} reads no statistics; --stats is not used");

        CalibrationStatistics? statistics = null;
        IReadOnlyList<int[]>? windows = null;
        RunSettings? run = null;
        if (needsStatistics && request.Stats is { } statsPath)
        {
            var contents = StatsFile.Read(statsPath);
            CheckStatsMatch(statsPath, contents.Statistics, selection);
            (statistics, run) = (contents.Statistics, contents.Run);
        }
        else if (needsStatistics)
        {
            var extra = W8A8Scheme.ExtraTensors(structure, request.Options);
            var calibrated = AnalyzeRun.Calibrate(new AnalyzeRequest
            {
                Model = request.Model, Text = request.Text, Ids = request.Ids, Tokenizer = request.Tokenizer, Output = request.Output,
                SequenceLength = request.SequenceLength, MaxTokens = request.MaxTokens, Bos = bos, Device = request.Device,
                Probes = new ProbeSettings { Kinds = ProbeGroups.ByName["linear-inputs"], Tensors = extra },
            }, log, progress, commandLine);
            (statistics, windows, run) = (calibrated.Statistics, calibrated.Windows, calibrated.Run);
        }
        if (windows is null && hasText)
        {
            var context = ModelLimits.Context(model, structure);
            var rows = ModelLimits.Vocabulary(structure);
            int seqLen = request.SequenceLength ?? (int)Math.Min(context?.Value ?? 512, 512);
            windows = CalibrationInputs.Prepare(new CalibrationRequest(modelPath, request.Text, request.Text is null ? request.Ids : null, request.Tokenizer, seqLen,
                request.MaxTokens, bos, structure.Architecture == ModelArchitecture.Encoder,
                context is null ? null : (checked((int)context.Value), context.Source), rows is null ? null : checked((int)rows.Value))).Corpus.Windows.Select(w => w.Ids).ToArray();
        }
        return new Calibration(statistics, windows, run);
    }

    /// <summary>A stats file of another model would set wrong scales: every selected site's input must be a point of it with the
    /// linears' width.</summary>
    private static void CheckStatsMatch(string statsPath, CalibrationStatistics statistics, LinearSelection selection)
    {
        foreach (var site in selection.Sites)
        {
            if (ActivationRanges.PointOf(statistics, site.Input.Name) is not { } point)
            {
                if (site.Kind == SiteKind.LmHead) continue; // the scheme names the missing point itself
                throw new UsageException($"{statsPath}: has no probe point for '{site.Input.Name}' (the input of {site}); run analyze on this model, or give --text FILE");
            }
            long width = site.Linears[0].Linear.InFeatures;
            if (point.Channels != width)
                throw new UsageException($"{statsPath}: point '{point.Id}' has {point.Channels} channels, the linears reading '{site.Input.Name}' take {width}; run analyze on this model");
        }
    }

    /// <summary>ONNX Runtime must load the quantized model (a model it refuses is a failed rewrite: exit 3, nothing written); with
    /// windows, both models run on them and the next-token distributions are compared.</summary>
    private static DivergenceReport? Check(string original, string quantized, IReadOnlyList<int[]>? windows, ModelStructure structure, SessionSettings settings,
        bool compare, TextWriter log)
    {
        ModelSession session;
        try { session = SessionFactory.Open(quantized, settings); }
        catch (RuntimeSetupException ex) { throw new RewriteFailedException($"{original}: ONNX Runtime does not load the quantized model: {ex.Message}", ex); }
        using (session)
        {
            if (!compare || windows is null || windows.Count == 0) return null;
            log.WriteLine($"comparing the quantized model with the original on {windows.Count} window(s) ...");
            using var reference = SessionFactory.Open(original, settings);
            try
            {
                return OutputDivergence.Measure(reference, session, windows, new DivergenceOptions { TokenInput = structure.Inputs.InputIds?.Name, BatchSize = 4 });
            }
            catch (ModelRunException ex) { throw new RewriteFailedException($"{original}: the quantized model fails in ONNX Runtime: {ex.Message}", ex); }
            catch (Mitigation.MitigationInputException ex) { log.WriteLine($"note: no comparison: {ex.Message}"); return null; }
        }
    }

    private static long ModelBytes(string modelPath, Model model) =>
        new FileInfo(modelPath).Length + model.ExternalFiles.Keys.Where(File.Exists).Sum(f => new FileInfo(f).Length);

    private static void CopyCompanions(string from, string to)
    {
        foreach (string name in MitigateRun.Companions)
        {
            string source = Path.Combine(from, name);
            if (File.Exists(source)) File.Copy(source, Path.Combine(to, name), overwrite: false);
        }
    }

    private static void CheckOutput(QuantizeRequest request) => OutputFolder.Check(request.Output, request.Force, "quantize", ReportFile);

    private static void Commit(string finished, string output, bool force) => OutputFolder.Commit(finished, output, force);
}
