using System.Text.Json;
using System.Text.RegularExpressions;
using OnnxOutlierTools.Inspection;
using OnnxOutlierTools.IO;
using OnnxOutlierTools.Tests.IO;

namespace OnnxOutlierTools.Tests.Cli;

public class InspectCommandTests
{
    private static readonly string GqaModel = Fixtures.Export("llama-genai-gqa-fp32", "model.onnx");
    private static readonly string BeamSearchModel = Fixtures.Export("gpt2-ort-beamsearch", "tiny_gpt2_beamsearch.onnx");

    private static JsonElement InspectJson(string path)
    {
        var result = CliRunner.Run("inspect", "--json", path);
        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Equal("", result.Stderr);
        return JsonDocument.Parse(result.Stdout).RootElement;
    }

    [Fact]
    public void Inspect_GqaModel_ReportsNodesOpsAndExternalData()
    {
        var json = InspectJson(GqaModel);

        Assert.Equal(33, json.GetProperty("nodes").GetProperty("total").GetInt32());
        Assert.Equal(33, json.GetProperty("nodes").GetProperty("mainGraph").GetInt32());
        Assert.Equal(0, json.GetProperty("nodes").GetProperty("nested").GetInt32());
        var gqa = json.GetProperty("opTypes").GetProperty("com.microsoft::GroupQueryAttention");
        Assert.Equal("com.microsoft", gqa.GetProperty("domain").GetString());
        Assert.Equal("GroupQueryAttention", gqa.GetProperty("opType").GetString());
        Assert.Equal(2, gqa.GetProperty("count").GetInt32());
        Assert.Equal(0, gqa.GetProperty("nestedCount").GetInt32());

        var external = Assert.Single(json.GetProperty("externalData").EnumerateArray());
        Assert.Equal("model.onnx.data", external.GetProperty("location").GetString());
        Assert.True(external.GetProperty("present").GetBoolean());
        Assert.Equal(4_260_160, external.GetProperty("bytes").GetInt64());
        Assert.Equal(19, external.GetProperty("tensorCount").GetInt32());
        Assert.Equal(JsonValueKind.Null, external.GetProperty("reason").ValueKind);
    }

    [Fact]
    public void Inspect_GqaModel_ReportsHeaderInputsOutputsAndInitializers()
    {
        var json = InspectJson(GqaModel);

        Assert.Equal(Path.GetFullPath(GqaModel), json.GetProperty("path").GetString());
        Assert.Equal(13_348, json.GetProperty("fileBytes").GetInt64());
        Assert.Equal("onnxruntime-genai", json.GetProperty("producerName").GetString());
        Assert.Equal("0.0.0", json.GetProperty("producerVersion").GetString());
        Assert.Equal(7, json.GetProperty("irVersion").GetInt64());
        Assert.Equal(["ai.onnx:14", "com.microsoft:1"],
            json.GetProperty("opsetImports").EnumerateArray().Select(o => $"{o.GetProperty("domain").GetString()}:{o.GetProperty("version").GetInt64()}"));

        var inputs = json.GetProperty("inputs").EnumerateArray().ToArray();
        Assert.Equal(6, inputs.Length);
        Assert.Equal("input_ids", inputs[0].GetProperty("name").GetString());
        Assert.Equal("INT64", inputs[0].GetProperty("elementType").GetString());
        Assert.Equal("[\"batch_size\",\"sequence_length\"]", Compact(inputs[0].GetProperty("shape")));
        Assert.Equal("past_key_values.0.key", inputs[2].GetProperty("name").GetString());
        Assert.Equal("[\"batch_size\",1,\"past_sequence_length\",16]", Compact(inputs[2].GetProperty("shape")));
        var logits = json.GetProperty("outputs")[0];
        Assert.Equal("logits", logits.GetProperty("name").GetString());
        Assert.Equal("FLOAT", logits.GetProperty("elementType").GetString());
        Assert.Equal("[\"batch_size\",\"sequence_length\",32000]", Compact(logits.GetProperty("shape")));

        var init = json.GetProperty("initializers");
        Assert.Equal(19, init.GetProperty("count").GetInt32());
        var floats = init.GetProperty("byDataType").GetProperty("FLOAT");
        Assert.Equal(19, floats.GetProperty("tensorCount").GetInt32());
        // All initializers are FLOAT and exactly fill the data file (MANIFEST: 4,260,160 bytes).
        Assert.Equal(4_260_160, floats.GetProperty("bytes").GetInt64());
        Assert.Equal(4_260_160 / 4, floats.GetProperty("parameterCount").GetInt64());
    }

    [Fact]
    public void Inspect_BeamSearchModel_CountsAndMarksNestedNodes()
    {
        var json = InspectJson(BeamSearchModel);

        Assert.Equal(1, json.GetProperty("nodes").GetProperty("mainGraph").GetInt32());
        Assert.Equal(59, json.GetProperty("nodes").GetProperty("nested").GetInt32());
        Assert.Equal(60, json.GetProperty("nodes").GetProperty("total").GetInt32());

        var ops = json.GetProperty("opTypes");
        var beam = ops.GetProperty("com.microsoft::BeamSearch");
        Assert.Equal(1, beam.GetProperty("count").GetInt32());
        Assert.Equal(0, beam.GetProperty("nestedCount").GetInt32());
        var add = ops.GetProperty("Add");
        Assert.Equal(0, add.GetProperty("count").GetInt32());
        Assert.Equal(20, add.GetProperty("nestedCount").GetInt32());

        var nested = Assert.Single(json.GetProperty("nestedGraphs").EnumerateArray());
        Assert.Equal("com.microsoft::BeamSearch", nested.GetProperty("ownerOpType").GetString());
        Assert.Equal("decoder", nested.GetProperty("attribute").GetString());
        Assert.Equal(59, nested.GetProperty("nodeCount").GetInt32());
        Assert.Equal(1, nested.GetProperty("depth").GetInt32());
        Assert.Equal(2, json.GetProperty("initializers").GetProperty("count").GetInt32());
    }

    public static TheoryData<string> ManifestModels => new(ManifestFacts.All.Keys);

    /// <summary>Published facts (MANIFEST "Per-model graph facts", made with the onnx Python package)
    /// against the summary of every fixture.</summary>
    [Theory]
    [MemberData(nameof(ManifestModels))]
    public void Summary_EveryFixture_MatchesManifestFacts(string relative)
    {
        var facts = ManifestFacts.All[relative];
        using var model = ModelReader.Load(Fixtures.Path(relative), new LoadOptions { RequireExternalData = false });
        var s = ModelSummary.Create(model);

        Assert.Equal(facts.IrVersion, s.IrVersion);
        Assert.Equal(facts.Producer, $"{s.ProducerName} {s.ProducerVersion}");
        Assert.Equal(facts.Opsets, s.OpsetImports.Select(o => $"{o.Domain}:{o.Version}"));
        Assert.Equal(facts.Nodes, s.Nodes.Total);
        Assert.Equal(facts.Initializers, s.Initializers.Count);
        if (s.Initializers.NestedCount == 0)
            Assert.Equal(facts.InitializerTypes, s.Initializers.ByDataType.ToDictionary(p => p.Key, p => p.Value.TensorCount));
        Assert.Equal(facts.ExternalFiles, s.ExternalData.Select(f => f.Location));
        Assert.Equal(facts.Histogram.OrderBy(p => p.Key, StringComparer.Ordinal),
            s.OpTypes.Select(p => new KeyValuePair<string, int>(p.Key, p.Value.Total)).OrderBy(p => p.Key, StringComparer.Ordinal));
        Assert.Equal(facts.Histogram.Values.Sum(), s.Nodes.Total);
    }

    [Fact]
    public void Inspect_GqaModelWithoutDataFile_WorksAndReportsItAbsent()
    {
        using var temp = new TempFolder();
        string model = temp.CopyGqaModel(withData: false);

        var json = InspectJson(model);
        Assert.Equal(33, json.GetProperty("nodes").GetProperty("total").GetInt32());
        Assert.Equal(4_260_160, json.GetProperty("initializers").GetProperty("bytes").GetInt64());
        var external = Assert.Single(json.GetProperty("externalData").EnumerateArray());
        Assert.Equal("model.onnx.data", external.GetProperty("location").GetString());
        Assert.False(external.GetProperty("present").GetBoolean());
        Assert.Equal(JsonValueKind.Null, external.GetProperty("bytes").ValueKind);
        Assert.Equal("not found", external.GetProperty("reason").GetString());

        var text = CliRunner.Run("inspect", model);
        Assert.True(text.ExitCode == 0, text.ToString());
        Assert.Equal("", text.Stderr);
        Assert.Contains("model.onnx.data  ABSENT (not found)", text.Stdout);
    }

    [Fact]
    public void Inspect_TooShortDataFile_WorksAndReportsItUnusable()
    {
        using var temp = new TempFolder();
        string model = temp.CopyGqaModel(withData: false);
        File.WriteAllBytes(temp.Path("model.onnx.data"), new byte[1000]);

        var json = InspectJson(model);
        var external = Assert.Single(json.GetProperty("externalData").EnumerateArray());
        Assert.True(external.GetProperty("present").GetBoolean());
        Assert.Equal(1000, external.GetProperty("bytes").GetInt64());
        Assert.Equal(4_260_160, external.GetProperty("requiredBytes").GetInt64());
        Assert.StartsWith("too short", external.GetProperty("reason").GetString());
    }

    [Fact]
    public void InspectJson_Always_HasTheDocumentedProperties()
    {
        var json = InspectJson(BeamSearchModel);

        string[] topLevel = ["schemaVersion", "path", "fileBytes", "producerName", "producerVersion", "irVersion", "opsetImports",
            "inputs", "outputs", "nodes", "opTypes", "nestedGraphs", "initializers", "externalData", "folder"];
        Assert.Equal(topLevel, json.EnumerateObject().Select(p => p.Name));
        Assert.Equal(ModelSummary.CurrentSchemaVersion, json.GetProperty("schemaVersion").GetInt32());
        Assert.Equal(["name", "kind", "elementType", "shape"], json.GetProperty("inputs")[0].EnumerateObject().Select(p => p.Name));
        Assert.Equal(["mainGraph", "nested", "total"], json.GetProperty("nodes").EnumerateObject().Select(p => p.Name));
        Assert.Equal(["domain", "opType", "count", "nestedCount", "total"],
            json.GetProperty("opTypes").EnumerateObject().First().Value.EnumerateObject().Select(p => p.Name));
        Assert.Equal(["owner", "ownerOpType", "ownerName", "attribute", "index", "graphName", "parentGraph", "depth", "nodeCount", "initializerCount"],
            json.GetProperty("nestedGraphs")[0].EnumerateObject().Select(p => p.Name));
        Assert.Equal(["count", "nestedCount", "parameterCount", "bytes", "byDataType"],
            json.GetProperty("initializers").EnumerateObject().Select(p => p.Name));

        var gqa = InspectJson(GqaModel);
        Assert.Equal(["location", "path", "present", "bytes", "tensorCount", "requiredBytes", "reason"],
            gqa.GetProperty("externalData")[0].EnumerateObject().Select(p => p.Name));
        Assert.Equal(["folder", "hfConfig", "genAiConfig", "tokenizerFiles"],
            gqa.GetProperty("folder").EnumerateObject().Select(p => p.Name));
        Assert.Equal(["file", "modelType", "bosTokenId", "eosTokenIds", "hiddenSize", "layerCount", "vocabularySize", "problem"],
            gqa.GetProperty("folder").GetProperty("genAiConfig").EnumerateObject().Select(p => p.Name));
    }

    [Fact]
    public void SummaryJson_ReadBack_GivesTheSameJson()
    {
        using var model = ModelReader.Load(BeamSearchModel);
        string json = ModelSummary.Create(model).ToJson();

        var back = ModelSummary.FromJson(json);

        Assert.Equal(json, back.ToJson());
        Assert.Equal(59, back.NestedGraphs[0].NodeCount);
        Assert.Equal(OnnxOutlierTools.Ir.Dim.Symbolic("batch_size"), back.Inputs[0].Shape![0]);
    }

    [Fact]
    public void SummaryJson_WithUnknownProperties_StillReads()
    {
        using var model = ModelReader.Load(GqaModel);
        string json = ModelSummary.Create(model).ToJson();
        // A later version adds sections (e.g. "layers"); this version must still read the file.
        string newer = json.Insert(json.LastIndexOf('}'), ",\n  \"layers\": { \"count\": 2, \"items\": [] }\n");

        var back = ModelSummary.FromJson(newer);

        Assert.Equal(33, back.Nodes.Total);
    }

    [Fact]
    public void Inspect_Text_ShowsOpsInputsAndDataFile()
    {
        var result = CliRunner.Run("inspect", GqaModel);

        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Equal("", result.Stderr);
        Assert.Matches(@"(?m)^nodes: 33$", result.Stdout);
        Assert.Matches(@"(?m)^  com\.microsoft::GroupQueryAttention +2$", result.Stdout);
        Assert.Matches(@"(?m)^  input_ids +INT64 +\[batch_size,sequence_length\]$", result.Stdout);
        Assert.Matches(@"(?m)^  model\.onnx\.data  4,260,160 bytes, 19 tensors$", result.Stdout);
    }

    private static string Compact(JsonElement e) => JsonSerializer.Serialize(e);
}

/// <summary>The "Per-model graph facts" section of the fixtures' MANIFEST.md, parsed.</summary>
public sealed record ManifestFacts(long IrVersion, string Producer, string[] Opsets, int Nodes, int Initializers,
    Dictionary<string, int> InitializerTypes, string[] ExternalFiles, Dictionary<string, int> Histogram)
{
    public static IReadOnlyDictionary<string, ManifestFacts> All { get; } = Parse(File.ReadAllText(Fixtures.Path("MANIFEST.md")));

    private static Dictionary<string, ManifestFacts> Parse(string manifest)
    {
        var result = new Dictionary<string, ManifestFacts>(StringComparer.Ordinal);
        string facts = manifest[manifest.IndexOf("## Per-model graph facts", StringComparison.Ordinal)..];
        foreach (Match section in Regex.Matches(facts, @"### (exports/\S+)\n((?:- .*\n?)+)"))
        {
            string body = section.Groups[2].Value;
            var header = Regex.Match(body, @"- ir_version (\d+); producer '([^']*)'; opsets (.*)");
            var counts = Regex.Match(body, @"- nodes (\d+); initializers (\d+) \{(.*?)\}; external data: (.*)");
            var histogram = Regex.Match(body, @"- op histogram: (.*)");
            result[section.Groups[1].Value] = new ManifestFacts(
                long.Parse(header.Groups[1].Value),
                header.Groups[2].Value,
                header.Groups[3].Value.Split(", "),
                int.Parse(counts.Groups[1].Value),
                int.Parse(counts.Groups[2].Value),
                Regex.Matches(counts.Groups[3].Value, @"'(\w+)': (\d+)").ToDictionary(m => m.Groups[1].Value, m => int.Parse(m.Groups[2].Value)),
                counts.Groups[4].Value == "none" ? [] : Regex.Matches(counts.Groups[4].Value, @"'([^']+)'").Select(m => m.Groups[1].Value).ToArray(),
                histogram.Groups[1].Value.Split(", ").Select(e => e.Trim()).ToDictionary(e => e[..e.LastIndexOf(' ')], e => int.Parse(e[(e.LastIndexOf(' ') + 1)..])));
        }
        if (result.Count < 12) throw new InvalidOperationException($"MANIFEST facts: parsed only {result.Count} models");
        return result;
    }
}

/// <summary><c>inspect FOLDER</c> and <c>convert FOLDER</c> on the published fixture folders, as downloaded.</summary>
public class ModelFolderCommandTests
{
    [Theory]
    [InlineData("gpt2-ort-fused-fp32", "past.onnx")]      // genai_config.json names it
    [InlineData("llama-genai-gqa-fp32", "model.onnx")]    // genai_config.json
    [InlineData("llama-torch-nopast", "model.onnx")]      // model.onnx
    [InlineData("gpt2-torch-past", "gpt2_past.onnx")]     // the only .onnx
    public void Inspect_Folder_ReportsTheModelInIt(string flavour, string file)
    {
        string folder = Fixtures.Path("exports", flavour);

        var byFolder = CliRunner.Run("inspect", folder);
        var byFile = CliRunner.Run("inspect", Path.Combine(folder, file));

        Assert.True(byFolder.ExitCode == 0, byFolder.ToString());
        Assert.StartsWith($"model:     {Path.Combine(folder, file)} (", byFolder.Stdout);
        Assert.Equal(byFile.Stdout, byFolder.Stdout);
    }

    [Fact]
    public void Convert_Folder_ConvertsTheModelInIt()
    {
        using var temp = new TempFolder("convert-folder");
        var result = CliRunner.Run("convert", Fixtures.Path("exports", "gpt2-ort-fused-fp32"), "-o", temp.Path("out.onnx"));

        Assert.True(result.ExitCode == 0, result.ToString());
        using var original = OnnxOutlierTools.IO.ModelReader.Load(Fixtures.Export("gpt2-ort-fused-fp32", "past.onnx"));
        using var copy = OnnxOutlierTools.IO.ModelReader.Load(temp.Path("out.onnx"));
        Assert.Equal(original.Graph.Nodes.Count, copy.Graph.Nodes.Count);
        Assert.Equal(original.Graph.Initializers.Count, copy.Graph.Initializers.Count);
    }

    [Fact]
    public void Inspect_FolderWithSeveralModels_IsOneLineErrorListingThem()
    {
        using var temp = new TempFolder("inspect-folder");
        temp.CopyFixture("gpt2-torch-past", "gpt2_past.onnx", "decoder_with_past_model.onnx");
        temp.CopyFixture("gpt2-torch-nopast", "GPT2Model.onnx", "decoder_model.onnx");

        var result = CliRunner.Run("inspect", temp.FullPath);

        Assert.Equal(2, result.ExitCode);
        Assert.Equal([$"error: {temp.FullPath}: is a directory with 2 models (decoder_model.onnx, decoder_with_past_model.onnx); name the one to use"],
            result.StderrLines);
        Assert.Equal("", result.Stdout);
    }
}
