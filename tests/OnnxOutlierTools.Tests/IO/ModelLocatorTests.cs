using OnnxOutlierTools.IO;

namespace OnnxOutlierTools.Tests.IO;

/// <summary>Which file a model folder stands for. The locator only looks at names, so empty files do.</summary>
public class ModelLocatorTests
{
    [Fact]
    public void Locate_File_IsTheFileItself()
    {
        using var temp = new TempFolder("locate");
        string file = Touch(temp, "weights.onnx");
        Assert.Equal(file, ModelLocator.Locate(file));
        Assert.Equal(temp.Path("absent.onnx"), ModelLocator.Locate(temp.Path("absent.onnx")));
    }

    [Fact]
    public void Locate_GenAiFolder_IsTheDecoderItsConfigNames()
    {
        using var temp = new TempFolder("locate");
        Touch(temp, "model.onnx");
        Touch(temp, "decoder.onnx");
        File.WriteAllText(temp.Path("genai_config.json"), """{ "model": { "decoder": { "filename": "decoder.onnx", "head_size": 8 } } }""");

        Assert.Equal(temp.Path("decoder.onnx"), ModelLocator.Locate(temp.FullPath));
    }

    [Theory]
    [InlineData("""{ "model": { "decoder": { "filename": "../outside.onnx" } } }""", "genai_config.json: model.decoder.filename '../outside.onnx' is outside the folder")]
    [InlineData("""{ "model": { "decoder": { "filename": "/etc/passwd" } } }""", "genai_config.json: model.decoder.filename '/etc/passwd' is outside the folder")]
    [InlineData("""{ "model": { "decoder": { "filename": "gone.onnx" } } }""", "genai_config.json: model.decoder.filename 'gone.onnx' not found in the folder")]
    [InlineData("""{ "model": { "type": "llama" } }""", "genai_config.json: has no model.decoder.filename naming the model; pass the .onnx file itself")]
    [InlineData("""{ "model": """, "genai_config.json: not valid JSON: ")]
    public void Locate_BadGenAiConfig_IsOneLineErrorNamingTheConfig(string config, string problem)
    {
        using var temp = new TempFolder("locate");
        Touch(temp, "model.onnx");
        File.WriteAllText(temp.Path("genai_config.json"), config);

        var ex = Assert.Throws<ModelLoadException>(() => ModelLocator.Locate(temp.FullPath));

        Assert.StartsWith(temp.Path(problem), ex.Message);
        Assert.DoesNotContain('\n', ex.Message);
    }

    [Fact]
    public void Locate_OptimumFolder_IsModelOnnx()
    {
        using var temp = new TempFolder("locate");
        Touch(temp, "model.onnx");
        Touch(temp, "model_quantized.onnx");
        Assert.Equal(temp.Path("model.onnx"), ModelLocator.Locate(temp.FullPath));
    }

    [Fact]
    public void Locate_HubRepositoryWithOnnxSubfolder_IsOnnxModelOnnx()
    {
        using var temp = new TempFolder("locate");
        File.WriteAllText(temp.Path("config.json"), "{}");
        Touch(temp, "onnx", "model.onnx");
        Touch(temp, "onnx", "model_fp16.onnx");
        Touch(temp, "onnx", "model_quantized.onnx");
        Assert.Equal(temp.Path("onnx", "model.onnx"), ModelLocator.Locate(temp.FullPath));
    }

    [Fact]
    public void Locate_SingleOnnxFile_IsThatFile()
    {
        using var top = new TempFolder("locate");
        Touch(top, "gpt2_past.onnx");
        Touch(top, "gpt2_past.onnx.data");
        Assert.Equal(top.Path("gpt2_past.onnx"), ModelLocator.Locate(top.FullPath));

        using var nested = new TempFolder("locate");
        Touch(nested, "onnx", "decoder_model_merged.onnx");
        Assert.Equal(nested.Path("onnx", "decoder_model_merged.onnx"), ModelLocator.Locate(nested.FullPath));
    }

    [Fact]
    public void Locate_SeveralCandidates_ListsThemInsteadOfGuessing()
    {
        using var temp = new TempFolder("locate");
        Touch(temp, "decoder_with_past_model.onnx");
        Touch(temp, "decoder_model.onnx");
        Touch(temp, "decoder_model_merged.onnx");

        var ex = Assert.Throws<ModelLoadException>(() => ModelLocator.Locate(temp.FullPath));

        Assert.Equal($"{temp.FullPath}: is a directory with 3 models (decoder_model.onnx, decoder_model_merged.onnx, " +
            "decoder_with_past_model.onnx); name the one to use", ex.Message);
    }

    [Fact]
    public void Locate_FolderWithoutModel_SaysWhatItLookedFor()
    {
        using var temp = new TempFolder("locate");
        Touch(temp, "model.onnx.data");
        Directory.CreateDirectory(temp.Path("onnx"));

        var ex = Assert.Throws<ModelLoadException>(() => ModelLocator.Locate(temp.FullPath));

        Assert.Equal($"{temp.FullPath}: is a directory without an ONNX model (looked for genai_config.json, model.onnx, onnx/model.onnx, a single *.onnx)", ex.Message);
    }

    private static string Touch(TempFolder temp, params string[] parts)
    {
        string path = temp.Path(parts);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        File.WriteAllBytes(path, []);
        return path;
    }
}
