using OnnxOutlierTools.Ir;
using OnnxOutlierTools.IO;

namespace OnnxOutlierTools.Import;

/// <summary>Writes a decoder the way exporters lay out a model folder: model.onnx with its weights in
/// external data (model.onnx.data) and an HF-style config.json (bos/eos ids, sizes) beside it.</summary>
public static class DecoderFolder
{
    /// <summary>Flavour names used on command lines.</summary>
    public static IReadOnlyList<string> FlavourNames { get; } = ["decomposed", "decomposed-past", "genai-gqa"];

    public static LlamaOnnxFlavour ParseFlavour(string name) => name switch
    {
        "decomposed" => LlamaOnnxFlavour.Decomposed,
        "decomposed-past" => LlamaOnnxFlavour.DecomposedWithPast,
        "genai-gqa" => LlamaOnnxFlavour.GenAiGqa,
        _ => throw new ArgumentException($"unknown flavour '{name}' ({string.Join(", ", FlavourNames)})"),
    };

    /// <summary>The files a decoder folder holds, in the order they are checked and written.</summary>
    public static IReadOnlyList<string> FileNames { get; } = ["model.onnx", "model.onnx.data", "config.json"];

    /// <summary>What an imported genai-gqa folder holds besides <see cref="FileNames"/>, so that onnxruntime-genai
    /// runs it as shipped: its config and the tokenizer in the Hugging Face form genai's tokenizer loads.</summary>
    public static IReadOnlyList<string> GenAiFileNames { get; } = ["genai_config.json", "tokenizer.json", "tokenizer_config.json"];

    /// <summary>The files <see cref="FromLlama2c"/> writes for <paramref name="flavour"/>.</summary>
    public static IReadOnlyList<string> FileNamesFor(LlamaOnnxFlavour flavour) =>
        flavour == LlamaOnnxFlavour.GenAiGqa ? [.. FileNames, .. GenAiFileNames] : FileNames;

    /// <summary>Writes model.onnx, model.onnx.data and config.json into <paramref name="outDir"/> (created if
    /// needed). Without <paramref name="overwrite"/> any of them existing is an <see cref="OutputExistsException"/>
    /// raised before anything is written; with it they are replaced, each atomically.</summary>
    public static SaveResult Save(Model model, string outDir, DecoderConfig config, LlamaOnnxFlavour flavour, string dtype, bool overwrite = false)
    {
        CheckTarget(outDir, overwrite);
        var result = ModelWriter.Save(model, Path.Combine(outDir, "model.onnx"), new SaveOptions { Layout = TensorLayout.External, Overwrite = overwrite });
        AtomicTextFile.Write(Path.Combine(outDir, "config.json"), HfConfigJson.Create(config, flavour != LlamaOnnxFlavour.Decomposed, dtype), overwrite);
        return result;
    }

    /// <summary>The texts of <see cref="GenAiFileNames"/> (tokenizer files only with a <paramref name="tokenizer"/>),
    /// made before anything is written so a tokenizer that cannot be expressed refuses the import.</summary>
    public static GenAiCompanions GenAiCompanionsFor(DecoderConfig config, Llama2cTokenizer? tokenizer, string tokenizerName)
    {
        ArgumentNullException.ThrowIfNull(config);
        if (tokenizer is null) return new(GenAiConfigJson.Create(config), null, null);
        if (tokenizer.VocabSize != config.VocabSize)
            throw new Llama2cFormatException(tokenizerName, $"holds {tokenizer.VocabSize} tokens, the checkpoint's vocabulary {config.VocabSize}");
        return new(GenAiConfigJson.Create(config), Llama2cTokenizerJson.Create(tokenizer, tokenizerName), Llama2cTokenizerJson.CreateConfig(config.MaxSeqLen));
    }

    /// <summary>Refuses a target that is a file, or (without <paramref name="overwrite"/>) holds any of the
    /// files to be written: all are checked before anything is written, so a refused config.json
    /// never leaves a new model beside the old config.</summary>
    public static void CheckTarget(string outDir, bool overwrite, LlamaOnnxFlavour flavour = LlamaOnnxFlavour.Decomposed)
    {
        ArgumentNullException.ThrowIfNull(outDir);
        var names = FileNamesFor(flavour);
        if (File.Exists(outDir)) throw new ModelSaveException(outDir, $"is a file; the output is a folder (for {string.Join(", ", names)})");
        if (overwrite) return;
        foreach (string name in names)
            if (File.Exists(Path.Combine(outDir, name))) throw new OutputExistsException(Path.Combine(outDir, name), "already exists");
    }

    /// <summary>The llama2.c tokenizer beside a checkpoint: tok{vocab}.bin (llama2.c's name for custom
    /// vocabularies, e.g. tok512.bin next to stories260K.bin), else tokenizer.bin; null when neither exists.</summary>
    public static string? LocateTokenizer(string checkpoint, int vocabSize)
    {
        string folder = Path.GetDirectoryName(Path.GetFullPath(checkpoint))!;
        foreach (string name in new[] { $"tok{vocabSize}.bin", "tokenizer.bin" })
            if (File.Exists(Path.Combine(folder, name))) return Path.Combine(folder, name);
        return null;
    }

    /// <summary>Converts a llama2.c checkpoint into a model folder. The genai-gqa flavour also gets
    /// <see cref="GenAiFileNames"/> (the tokenizer from <paramref name="tokenizerPath"/>, else found with
    /// <see cref="LocateTokenizer"/>; without one, a warning and no tokenizer files).</summary>
    public static SaveResult FromLlama2c(string checkpoint, string outDir, LlamaOnnxFlavour flavour, bool fp16, bool overwrite = false, string? tokenizerPath = null)
    {
        CheckTarget(outDir, overwrite, flavour); // before the (possibly long) conversion
        var weights = Llama2cCheckpoint.Load(checkpoint);
        GenAiCompanions? companions = null;
        if (flavour == LlamaOnnxFlavour.GenAiGqa)
        {
            tokenizerPath ??= LocateTokenizer(checkpoint, weights.Config.VocabSize);
            var tokenizer = tokenizerPath is null ? null : Llama2cTokenizer.Load(tokenizerPath, weights.Config.VocabSize);
            companions = GenAiCompanionsFor(weights.Config, tokenizer, tokenizerPath ?? "");
        }
        var options = new LlamaOnnxOptions
        {
            Flavour = flavour,
            WeightType = fp16 ? Tensors.TensorDataType.Float16 : Tensors.TensorDataType.Float,
            Description = $"converted from llama2.c checkpoint {Path.GetFileName(checkpoint)}",
        };
        SaveResult result;
        using (var model = LlamaOnnxBuilder.Build(weights, options))
            result = Save(model, outDir, weights.Config, flavour, fp16 ? "float16" : "float32", overwrite);
        if (companions is null) return result;
        companions.Write(outDir, overwrite);
        if (companions.TokenizerJson is not null) return result;
        string warning = $"no llama2.c tokenizer beside the checkpoint (tok{weights.Config.VocabSize}.bin or tokenizer.bin; or pass --tokenizer): " +
            "tokenizer.json not written, so onnxruntime-genai can run token ids but not text";
        return result with { Warnings = [.. result.Warnings, warning] };
    }
}

/// <summary>The texts of a genai-gqa folder's <see cref="DecoderFolder.GenAiFileNames"/> (the tokenizer's null without one).</summary>
public sealed record GenAiCompanions(string GenAiConfig, string? TokenizerJson, string? TokenizerConfig)
{
    /// <summary>Writes each file atomically.</summary>
    public void Write(string outDir, bool overwrite)
    {
        AtomicTextFile.Write(Path.Combine(outDir, "genai_config.json"), GenAiConfig, overwrite);
        if (TokenizerJson is not null) AtomicTextFile.Write(Path.Combine(outDir, "tokenizer.json"), TokenizerJson, overwrite);
        if (TokenizerConfig is not null) AtomicTextFile.Write(Path.Combine(outDir, "tokenizer_config.json"), TokenizerConfig, overwrite);
    }
}
