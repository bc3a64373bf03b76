using System.Text.Json;
using OnnxOutlierTools.Import;
using OnnxOutlierTools.Probes;
using OnnxOutlierTools.Reporting.Json;

namespace OnnxOutlierTools.Reporting.Stats;

/// <summary>What a stats file holds: the statistics and the settings the run was fed with.</summary>
public sealed record StatsFileContents(CalibrationStatistics Statistics, RunSettings? Run);

/// <summary>A stats file could not be read. The message is one line: "PATH: problem".</summary>
public sealed class StatsFileException(string path, string problem, Exception? inner = null) : Exception($"{path}: {problem}", inner)
{
    public string FilePath { get; } = path;
    public string Problem { get; } = problem;
}

/// <summary>
/// <c>stats.json</c>: everything one calibration run measured, complete enough to run the analysis again from the file
/// alone (<c>read(write(x))</c> equals <c>x</c> in every field, bit for bit). Schema version 2 (version 1 files are read
/// too: they had no <c>medianChannels</c> and every median was over all channels, so they read as medianChannels 0):
/// <code>
/// {
///   "schemaVersion": 2,                 // changes only when a field changes meaning, appears with a meaning older
///                                       //   files did not have, or disappears
///   "format": "onnx-outliers-stats",
///   "nonFiniteNumbers": "...",          // how NaN and infinities are written (below)
///   "manifest": { ... },                // the ProbeManifest as the probe pass wrote it: model, settings (kinds, tensors,
///                                       //   topK, attentionPositions, aboveThreshold, medianChannels: medians over
///                                       //   channels 0, s, 2s, .. with s = floor(C / medianChannels) when C is larger,
///                                       //   0 = every channel), points (id, kind, block, role, tensor,
///                                       //   channels, heads, readBy, outputs, source), skipped, originalOutputs
///   "corpus": {
///     "tokens": 4096, "windows": 8,     // tokens fed (padding never counted) and windows
///     "run": { text, textSha256, ids, tokenizer, tokenizerKind, sequenceLength, maxTokens, bos, bosAdded,
///              batchSize, device, deviceUsed, commandLine, toolVersion, finished } or null,
///     "tokenTexts": { "1": "&lt;s&gt;", ... }  // id -> text for every id the kept lists name
///   },
///   "points": [ {                       // in manifest order
///     "id": "block1.residual", "channels": 64, "topK": 32, "tokens": 4096,
///     "channelMax": [..C], "channelMin": [..C],                       // -Infinity / Infinity where nothing was seen
///     "channelSum": [..C], "channelSumSquares": [..C], "channelSumFourth": [..C],  // sums of x, x^2, x^4 (fp64)
///     "channelAboveCount": [..C],                                     // tokens with |x| above manifest.settings.aboveThreshold
///     "top": [ { "value": -312.5, "token": { "window": 0, "position": 0, "tokenId": 1 }, "channel": 7 }, ... ],
///                                       // the topK largest |x|, descending; value is signed
///     "largestTokens": [ { "token": {...}, "maxAbs": 312.5, "medianAbs": 0.41, "argMaxChannel": 7 }, ... ],
///     "highestRatioTokens": [ ... ],    // both: the 64 kept tokens, descending by maxAbs / by maxAbs/medianAbs
///     "tokenMaxAbs": { "binsPerOctave": 64, "minExponent": -40, "maxExponent": 40, "count": 4096,
///                      "lower": [...], "counts": [...] },             // per-token max |x|: the non-empty log bins
///     "tokenMedianAbs": { ... },        // per-token median |x|, same layout
///     "positionMaxAbs": [..16],         // max token max|x| at each leading position of a window; NaN: never seen
///     "attentionMass": [[..P] x H] or null,  // attention points: probability summed over queries, per head and position
///     "attentionQueries": 0             // the queries summed into attentionMass (mean mass = mass / attentionQueries)
///   } ]
/// }
/// </code>
/// Histogram bins: bin 0 holds zero (lower edge 0), bins 1.. cover [2^(minExponent + (i-1)/binsPerOctave), next edge),
/// the last bin (lower edge 2^maxExponent) everything above, infinities and NaN. Non-finite numbers are the strings
/// "NaN", "Infinity", "-Infinity" (<see cref="NonFiniteDoubleConverter"/>): strict JSON has no literal for them and
/// null would merge -infinity with +infinity. Number arrays are written on one line each.
/// </summary>
public static class StatsFile
{
    public const int CurrentSchemaVersion = 2;
    public const string FormatName = "onnx-outliers-stats";
    public const string NonFiniteNote = "NaN and infinities are the strings \"NaN\", \"Infinity\", \"-Infinity\"";

    /// <summary>Writes <paramref name="statistics"/> to <paramref name="path"/> atomically (a reader sees the old file or
    /// the new one). Without <paramref name="overwrite"/> an existing file is an error.</summary>
    public static void Write(string path, CalibrationStatistics statistics, RunSettings? run = null, bool overwrite = false) =>
        AtomicTextFile.Write(path, ToJson(statistics, run), overwrite);

    public static StatsFileContents Read(string path)
    {
        string text;
        try { text = File.ReadAllText(path); }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new StatsFileException(path, $"cannot read: {Text.Printable.FirstLine(ex.Message)}", ex);
        }
        try { return FromJson(text); }
        catch (FormatException ex) { throw new StatsFileException(path, ex.Message, ex); }
    }

    public static string ToJson(CalibrationStatistics statistics, RunSettings? run = null) =>
        JsonSerializer.Serialize(StatsMapping.ToDocument(statistics, run), ReportingJson.Options);

    /// <summary>Parses a stats file's text; a <see cref="FormatException"/> (one line) says what is wrong.</summary>
    public static StatsFileContents FromJson(string json)
    {
        StatsDocument? document;
        int version;
        try
        {
            using (var probe = JsonDocument.Parse(json))
            {
                var root = probe.RootElement;
                if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("format", out var format) || format.ValueKind != JsonValueKind.String || format.GetString() != FormatName)
                    throw new FormatException($"not a stats file (no \"format\": \"{FormatName}\")");
                if (!root.TryGetProperty("schemaVersion", out var versionProperty) || !versionProperty.TryGetInt32(out version))
                    throw new FormatException("no schemaVersion");
                if (version is not (1 or CurrentSchemaVersion))
                    throw new FormatException($"schema version {version}; this tool reads versions 1 and {CurrentSchemaVersion}");
            }
            document = JsonSerializer.Deserialize<StatsDocument>(json, ReportingJson.Options);
        }
        catch (JsonException ex)
        {
            string where = ex.Path is null ? "" : $" at {ex.Path}";
            throw new FormatException($"invalid stats JSON{where}: {Text.Printable.FirstLine(ex.Message)}", ex);
        }
        if (document is null) throw new FormatException("the file is JSON null");
        if (version == 1) // medians were over every channel before medianChannels existed
            document = document with { Manifest = document.Manifest with { Settings = document.Manifest.Settings with { MedianChannels = 0 } } };
        return StatsMapping.FromDocument(document);
    }
}
